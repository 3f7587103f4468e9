"""End-to-end tests of the apps: each case runs the executables as a user would and checks
what they print, write and return. Usage: test_apps.py BIN_DIR DATA_DIR SCRIPTS_DIR CASE"""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BIN, DATA, SCRIPTS = sys.argv[1], sys.argv[2], sys.argv[3]
XOR = os.path.join(BIN, "xor", "bittorch-xor")
MNIST = os.path.join(BIN, "mnist", "bittorch-mnist")
INFER = os.path.join(BIN, "infer", "bittorch-infer")
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
# A small slice keeps the cases fast.
SMALL = ["--train-limit", "2000", "--test-limit", "1000", "--no-progress"]


def run(*args, expect_code=0):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == expect_code, (
        f"{' '.join(args)} exited {result.returncode}, expected {expect_code}:\n{output}")
    return output


def table_accuracy(output, model):
    match = re.search(rf"^{model}\s+\S+\s+([\d.]+)%", output, re.M)
    if match is None:  # MNIST table: model, accuracy first
        match = re.search(rf"^{model}\s+([\d.]+)%", output, re.M)
    assert match, f"no '{model}' row in:\n{output}"
    return float(match.group(1))


def case_xor_both_reach_100_percent():
    output = run(XOR, "--compare")
    assert table_accuracy(output, "fp32") == 100.0, output
    assert table_accuracy(output, "ternary") == 100.0, output


def case_mnist_one_epoch_learns():
    output = run(MNIST, "--epochs", "1", *SMALL)
    accuracy = table_accuracy(output, "ternary")
    # Chance is 10%; a broken forward or backward stays near it.
    assert accuracy > 60.0, output


def case_mnist_compare_and_metrics_json():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "metrics.json")
        output = run(MNIST, "--compare", "--epochs", "2", "--metrics-json", path, *SMALL)
        table_accuracy(output, "fp32")
        table_accuracy(output, "ternary")
        assert "zero weights" in output and "->" in output, output
        with open(path) as f:
            doc = json.load(f)
        assert doc["dataset"] == "mnist" and doc["device"] == "cpu", doc
        assert [r["model"] for r in doc["runs"]] == ["fp32", "ternary"], doc
        for r in doc["runs"]:
            assert 0 <= r["final_test_accuracy"] <= 100
            assert [e["epoch"] for e in r["epochs"]] == [1, 2]
            for e in r["epochs"]:
                assert set(e) >= {"epoch", "train_loss", "test_loss", "test_accuracy", "seconds"}
            assert r["final_test_accuracy"] == r["epochs"][-1]["test_accuracy"]
        png = os.path.join(tmp, "curves.png")
        if shutil.which("gnuplot"):
            run("bash", os.path.join(SCRIPTS, "plot_metrics.sh"), path, png)
            with open(png, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def broken_copy(tmp, file, mutate):
    """A copy of the data set with `file` replaced by mutate(bytes) (None: removed)."""
    dir = os.path.join(tmp, "data")
    shutil.copytree(DATA, dir)
    path = os.path.join(dir, file)
    with open(path, "rb") as f:
        contents = f.read()
    os.chmod(path, 0o644)
    new = mutate(contents)
    if new is None:
        os.remove(path)
    else:
        with open(path, "wb") as f:
            f.write(new)
    return dir


def expect_data_error(dir, *needles):
    output = run(MNIST, "--data-dir", dir, *SMALL, expect_code=1)
    for needle in needles:
        assert needle in output, f"'{needle}' not in:\n{output}"
    assert "Usage" not in output and "terminate called" not in output, output


def case_mnist_bad_data():
    with tempfile.TemporaryDirectory() as tmp:
        expect_data_error(os.path.join(tmp, "nowhere"), "nowhere", "does not exist", "download_mnist.sh")
    with tempfile.TemporaryDirectory() as tmp:
        expect_data_error(broken_copy(tmp, FILES[1], lambda b: None),
                          "missing", FILES[1], "download_mnist.sh")
    with tempfile.TemporaryDirectory() as tmp:  # gzip stream cut in half
        expect_data_error(broken_copy(tmp, FILES[0], lambda b: b[: len(b) // 2]),
                          FILES[0], "truncated")
    with tempfile.TemporaryDirectory() as tmp:  # a flipped byte: gzip CRC or deflate error
        expect_data_error(broken_copy(tmp, FILES[2], lambda b: b[:5000] + bytes([b[5000] ^ 0xFF]) + b[5001:]),
                          FILES[2], "corrupted")
    with tempfile.TemporaryDirectory() as tmp:  # labels where images belong
        labels = open(os.path.join(DATA, FILES[3]), "rb").read()
        expect_data_error(broken_copy(tmp, FILES[2], lambda b: labels), FILES[2], "wrong magic number")
    with tempfile.TemporaryDirectory() as tmp:  # intact gzip of a truncated IDX file
        expect_data_error(broken_copy(tmp, FILES[3], lambda b: gzip.compress(gzip.decompress(b)[:5000])),
                          FILES[3], "truncated or corrupted")
    with tempfile.TemporaryDirectory() as tmp:  # fashion-mnist pointed at nothing
        output = run(MNIST, "--dataset", "fashion-mnist", "--data-dir", os.path.join(tmp, "x"),
                     *SMALL, expect_code=1)
        assert "dataset-fashion-mnist" in output, output


def case_mnist_bad_flags():
    cases = [["--epochs=-1"], ["--batch-size", "0"], ["--dataset", "cifar"], ["--device", "tpu"],
             ["--scale-mode", "median"], ["--threshold-factor", "1.5"], ["--lr", "0"],
             ["--bogus"], ["--epochs", "ten"], ["--log-level", "loud"], ["--compare", "--no-ternary"],
             ["--epochs", "0"], ["--activation-bits", "4"]]
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = os.path.exists("/dev/nvidia0")
    if not has_gpu:
        cases.append(["--cuda"])
        cases.append(["--device", "cuda"])
    for flags in cases:
        output = run(MNIST, *flags, expect_code=2)
        assert "Usage: bittorch-mnist" in output and "error:" in output, f"{flags}: {output}"
    output = run(XOR, "--steps", "0", expect_code=2)
    assert "Usage: bittorch-xor" in output, output


def case_help_lists_every_flag():
    output = run(MNIST, "--help")
    for flag in ["--epochs", "--batch-size", "--lr", "--seed", "--data-dir", "--dataset",
                 "--no-ternary", "--compare", "--cuda", "--device", "--threshold-factor",
                 "--scale-mode", "--activation-bits", "--save", "--load", "--metrics-json", "--log-level",
                 "--no-progress"]:
        assert flag in output, f"{flag} missing from --help:\n{output}"
    assert "(default: 128)" in output, output
    output = run(XOR, "--help")
    for flag in ["--steps", "--lr", "--seed", "--cuda", "--compare"]:
        assert flag in output, output


def case_checkpoint_round_trip():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        trained = table_accuracy(run(MNIST, "--epochs", "1", "--save", path, *SMALL), "ternary")
        assert os.listdir(tmp) == ["model.pt"], os.listdir(tmp)  # no temporary left behind
        loaded = table_accuracy(run(MNIST, "--epochs", "0", "--load", path, *SMALL), "ternary")
        assert loaded == trained, (trained, loaded)
        # Another kind of model, a corrupted file, a missing file.
        output = run(MNIST, "--no-ternary", "--epochs", "0", "--load", path, *SMALL, expect_code=1)
        assert "holds a 'ternary' model" in output, output
        with open(path, "rb") as f:
            contents = f.read()
        for broken in (contents[: len(contents) // 2], b"not a checkpoint at all"):
            with open(path, "wb") as f:
                f.write(broken)
            output = run(MNIST, "--epochs", "0", "--load", path, *SMALL, expect_code=1)
            assert path in output and "corrupted" in output, output
        output = run(MNIST, "--epochs", "0", "--load", path + ".none", *SMALL, expect_code=1)
        assert "does not exist" in output, output


def case_export_and_infer():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.btp")
        output = run(MNIST, "--epochs", "1", "--export", path, *SMALL)
        exported = re.search(r"packed model test accuracy ([\d.]+)%", output)
        assert exported, output
        assert os.listdir(tmp) == ["model.btp"], os.listdir(tmp)  # no temporary left behind
        output = run(INFER, "--model", path, "--test-limit", "1000")
        accuracy = re.search(r"^test accuracy\s+([\d.]+)%", output, re.M)
        assert accuracy and accuracy.group(1) == exported.group(1), (exported.group(1), output)
        memory = re.search(r"weight memory .*\(([\d.]+)x smaller\)", output)
        file_ratio = re.search(r"file size .*: ([\d.]+)x smaller", output)
        assert memory and float(memory.group(1)) >= 15.5, output
        assert file_ratio and float(file_ratio.group(1)) >= 19.0, output
        # A truncated file, a corrupted one, a missing one, no --model.
        with open(path, "rb") as f:
            contents = f.read()
        flipped = bytearray(contents)
        flipped[len(flipped) // 2] ^= 0x40
        for broken in (contents[: len(contents) // 2], bytes(flipped), b"BTPACK"):
            with open(path, "wb") as f:
                f.write(broken)
            output = run(INFER, "--model", path, expect_code=1)
            assert path in output and ("checksum" in output or "truncated" in output), output
            assert "terminate called" not in output, output
        output = run(INFER, "--model", path + ".none", expect_code=1)
        assert "cannot open" in output, output
        output = run(INFER, expect_code=2)
        assert "--model" in output, output


if __name__ == "__main__":
    globals()["case_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed")
