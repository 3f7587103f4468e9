"""End-to-end tests of the apps: each case runs the executables as a user would and checks
what they print, write and return. Usage: test_apps.py BIN_DIR DATA_DIR SCRIPTS_DIR CASE"""
import gzip
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

BIN, DATA, SCRIPTS = sys.argv[1], sys.argv[2], sys.argv[3]
XOR = os.path.join(BIN, "xor", "bittorch-xor")
MNIST = os.path.join(BIN, "mnist", "bittorch-mnist")
INFER = os.path.join(BIN, "infer", "bittorch-infer")
LM = os.path.join(BIN, "lm", "bittorch-lm")
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
# A small slice keeps the cases fast.
SMALL = ["--train-limit", "2000", "--test-limit", "1000", "--no-progress"]


def run_split(*args, expect_code=0, **kwargs):
    """Runs a command; returns (stdout, stderr) after checking its exit code."""
    kwargs.setdefault("timeout", 600)
    result = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    assert result.returncode == expect_code, (
        f"{' '.join(args)} exited {result.returncode}, expected {expect_code}:\n{result.stdout}{result.stderr}")
    return result.stdout, result.stderr


def run(*args, expect_code=0, **kwargs):
    stdout, stderr = run_split(*args, expect_code=expect_code, **kwargs)
    return stdout + stderr


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
    with tempfile.TemporaryDirectory() as tmp:  # the gzip trailer (CRC-32, length) cut off
        expect_data_error(broken_copy(tmp, FILES[1], lambda b: b[:-8]), FILES[1], "truncated")
    with tempfile.TemporaryDirectory() as tmp:  # bytes after the gzip stream
        expect_data_error(broken_copy(tmp, FILES[3], lambda b: b + b"junk"), FILES[3], "no gzip member")
    with tempfile.TemporaryDirectory() as tmp:  # intact gzip of a truncated IDX file
        expect_data_error(broken_copy(tmp, FILES[3], lambda b: gzip.compress(gzip.decompress(b)[:5000])),
                          FILES[3], "truncated or corrupted")
    expect_data_error(os.path.join(DATA, FILES[0]), "is not a directory")
    with tempfile.TemporaryDirectory() as tmp:  # fashion-mnist pointed at nothing
        output = run(MNIST, "--dataset", "fashion-mnist", "--data-dir", os.path.join(tmp, "x"),
                     *SMALL, expect_code=1)
        assert "dataset-fashion-mnist" in output, output


def case_mnist_full_sets_read_by_libtorch():
    """A full set in uncompressed IDX files (60,000 training and 10,000 test images) is read by
    LibTorch's torch::data::datasets::MNIST, anything else by the IDX reader; both give the same
    images, so the same run reaches the same accuracy. A full set whose file is cut short is
    not handed to LibTorch's class (which would read it without noticing): the IDX reader
    refuses it."""
    with tempfile.TemporaryDirectory() as tmp:
        full = os.path.join(tmp, "full")
        os.mkdir(full)
        for name in FILES:
            contents = gzip.decompress(open(os.path.join(DATA, name), "rb").read())
            if name.startswith("train"):  # the embedded 10,000 images six times: a full-size set
                header = 16 if "images" in name else 8
                count = struct.unpack(">I", contents[4:8])[0]
                contents = contents[:4] + struct.pack(">I", 6 * count) + contents[8:header] + 6 * contents[header:]
            with open(os.path.join(full, name[:-3]), "wb") as f:
                f.write(contents)
        flags = ["--epochs", "1", "--compare", *SMALL]
        embedded = run(MNIST, *flags)
        assert "(IdxDataset)" in embedded, embedded
        libtorch = run(MNIST, "--data-dir", full, *flags)
        assert "(torch::data::datasets::MNIST)" in libtorch, libtorch
        for model in ("fp32", "ternary"):
            assert table_accuracy(libtorch, model) == table_accuracy(embedded, model), (embedded, libtorch)
        images = os.path.join(full, FILES[2][:-3])
        with open(images, "r+b") as f:
            f.truncate(os.path.getsize(images) - 784)
        output = run(MNIST, "--data-dir", full, *SMALL, expect_code=1)
        assert "(IdxDataset)" not in output and "truncated" in output, output
    # Fashion-MNIST from the copy scripts/setup.sh decompresses.
    cache = os.environ.get("BITTORCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "bittorch")
    if os.path.isdir(os.path.join(cache, "fashion-mnist")):
        output = run(MNIST, "--dataset", "fashion-mnist", "--epochs", "1", *SMALL)
        assert "(torch::data::datasets::MNIST)" in output, output
        assert table_accuracy(output, "ternary") > 50.0, output
    else:
        print("Fashion-MNIST not decompressed (scripts/setup.sh): its reader is not checked")


def has_gpu():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return os.path.exists("/dev/nvidia0")


def case_mnist_bad_flags():
    # Each bad value exits 2 with the usage line and a message that names the flag.
    cases = {("--epochs=-1",): "--epochs must be >= 0", ("--batch-size", "0"): "--batch-size must be >= 1",
             ("--dataset", "cifar"): "--dataset must be mnist or fashion-mnist", ("--device", "tpu"): "--device",
             ("--scale-mode", "median"): "--scale-mode must be max or absmean",
             ("--threshold-factor", "1.5"): "--threshold-factor: expected threshold_factor in [0, 1]", ("--lr", "0"): "--lr must be > 0",
             ("--lr", "abc"): "--lr: 'abc' is not a number", ("--lr", "nan"): "--lr: 'nan' is not a finite number",
             ("--bogus",): "bogus", ("--epochs", "ten"): "--epochs: 'ten' is not an integer",
             ("--epochs", "99999999999999999999"): "--epochs: '99999999999999999999' is out of range",
             ("--log-level", "loud"): "--log-level", ("--compare", "--no-ternary"): "exclude each other",
             ("--epochs", "0"): "--epochs 0 only makes sense with --load", ("--activation-bits", "4"): "--activation-bits",
             ("--threads", "-2"): "--threads must be >= 0", ("--threads", "5000"): "--threads must be at most", ("--stop-after-epoch", "1"): "--stop-after-epoch needs --save",
             ("--load", "a", "--resume", "b"): "exclude each other"}
    if not has_gpu():
        cases[("--cuda",)] = "no CUDA GPU"
        cases[("--device", "cuda")] = "no CUDA GPU"
    for flags, message in cases.items():
        output = run(MNIST, *flags, expect_code=2)
        assert "Usage: bittorch-mnist" in output and "error:" in output, f"{flags}: {output}"
        assert message in output, f"{flags}: '{message}' not in {output}"
    output = run(XOR, "--steps", "0", expect_code=2)
    assert "Usage: bittorch-xor" in output and "--steps must be >= 1" in output, output
    output = run(INFER, "--test-limit", "x", "--model", "m", expect_code=2)
    assert "--test-limit: 'x' is not an integer" in output, output


def case_cli_conventions():
    """Results on stdout, logs and errors on stderr, fatal errors even with --log-level off,
    and the flags every app shares."""
    stdout, stderr = run_split(MNIST, "--epochs", "1", *SMALL)
    assert re.search(r"^ternary\s+[\d.]+%", stdout, re.M), stdout
    assert "[info]" not in stdout and "[info]" in stderr, (stdout, stderr)
    stdout, stderr = run_split(MNIST, "--data-dir", "/nonexistent", "--log-level", "off", expect_code=1)
    assert stdout == "" and "bittorch-mnist: error:" in stderr and "/nonexistent" in stderr, (stdout, stderr)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "m.btp")
        run(MNIST, "--epochs", "1", "--export", model, *SMALL)
        for app, flags in ((MNIST, ["--epochs", "1", *SMALL]), (XOR, ["--steps", "50"]),
                           (INFER, ["--model", model, "--test-limit", "200"])):
            name = os.path.basename(app)
            stdout, _ = run_split(app, "--version")
            assert re.match(rf"{name} \(BitTorch \d+\.\d+\.\d+, LibTorch 2\.11\.\d+\)", stdout), stdout
            help_text, _ = run_split(app, "--help")
            for flag in ("--device", "--cuda", "--threads", "--log-level", "--version", "--help"):
                assert flag in help_text, f"{name} --help lacks {flag}"
            run(app, *flags, "--device", "cpu", "--threads", "1", "--log-level", "warn")
            if not has_gpu():
                for gpu_flags in (["--cuda"], ["--device", "cuda"], ["--device", "cuda:0"]):
                    output = run(app, *flags, *gpu_flags, expect_code=2)
                    assert "no CUDA GPU" in output, output
    # bittorch-lm takes a command first; --version and --help work before one.
    stdout, _ = run_split(LM, "--version")
    assert re.match(r"bittorch-lm \(BitTorch \d+\.\d+\.\d+, LibTorch 2\.11\.\d+\)", stdout), stdout
    stdout, _ = run_split(LM, "--help")
    assert "--version" in stdout and "train" in stdout, stdout


def case_help_lists_every_flag():
    output = run(MNIST, "--help")
    for flag in ["--epochs", "--batch-size", "--lr", "--ternary-lr", "--lr-schedule", "--seed", "--data-dir", "--dataset",
                 "--no-ternary", "--compare", "--cuda", "--device", "--threshold-factor", "--scale-mode",
                 "--activation-bits", "--train-limit", "--test-limit", "--save", "--load", "--resume",
                 "--stop-after-epoch", "--export", "--metrics-json", "--log-level", "--no-progress", "--threads",
                 "--version"]:
        assert flag in output, f"{flag} missing from --help:\n{output}"
    assert "(default: 128)" in output, output
    output = run(XOR, "--help")
    for flag in ["--steps", "--lr", "--seed", "--cuda", "--device", "--compare", "--scale-mode"]:
        assert flag in output, output


def checkpoint_sections(contents):
    """(metadata JSON, archive bytes) of a checkpoint file's bytes (bittorch/train/checkpoint.h)."""
    assert contents[:8] == b"BTCKPT\r\n"
    (json_size,) = struct.unpack_from("<Q", contents, 12)
    metadata = json.loads(contents[20:20 + json_size])
    return metadata, 20 + json_size


def rewritten_checkpoint(contents, edit):
    """The checkpoint with its metadata changed by edit(metadata) and a valid checksum."""
    metadata, archive_at = checkpoint_sections(contents)
    edit(metadata)
    text = json.dumps(metadata).encode()
    body = contents[:12] + struct.pack("<Q", len(text)) + text + contents[archive_at:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def case_checkpoint_round_trip():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        # One thread: with more, MKL's products are not bit-reproducible from run to run.
        trained = table_accuracy(run(MNIST, "--epochs", "1", "--save", path, "--threads", "1", *SMALL), "ternary")
        assert os.listdir(tmp) == ["model.pt"], os.listdir(tmp)  # no temporary left behind
        loaded = table_accuracy(run(MNIST, "--epochs", "0", "--load", path, "--threads", "1", *SMALL), "ternary")
        assert loaded == trained, (trained, loaded)
        with open(path, "rb") as f:
            contents = f.read()
        metadata, _ = checkpoint_sections(contents)
        assert metadata["epochs_done"] == 1 and metadata["model"]["kind"] == "ternary", metadata
        assert [layer["type"] for layer in metadata["model"]["layers"]] == [
            "TernaryLinear", "ReLU", "TernaryLinear", "ReLU", "TernaryLinear"], metadata
        bad = os.path.join(tmp, "bad.pt")

        def expect_refused(data, *needles, flags=()):
            with open(bad, "wb") as f:
                f.write(data)
            output = run(MNIST, "--epochs", "0", "--load", bad, *flags, *SMALL, expect_code=1)
            for needle in (bad, *needles):
                assert needle in output, f"'{needle}' not in:\n{output}"
            assert "terminate called" not in output, output

        # Another kind of model, other quantization settings, other layer sizes.
        output = run(MNIST, "--no-ternary", "--epochs", "0", "--load", path, *SMALL, expect_code=1)
        assert "field model.kind" in output and '"ternary"' in output and '"fp32"' in output, output
        output = run(MNIST, "--threshold-factor", "0.3", "--epochs", "0", "--load", path, *SMALL, expect_code=1)
        assert "field model.layers[0].threshold_factor is 0.2" in output and "0.3" in output, output
        output = run(MNIST, "--scale-mode", "absmean", "--epochs", "0", "--load", path, *SMALL, expect_code=1)
        assert "scale_mode" in output, output

        def wider(metadata):
            metadata["model"]["layers"][0]["out_features"] = 300
        expect_refused(rewritten_checkpoint(contents, wider), "field model.layers[0].out_features is 300", "256")

        newer = bytearray(contents)
        newer[8] = 2  # the format version; the checksum covers it, so fix that too
        newer[-4:] = struct.pack("<I", zlib.crc32(bytes(newer[:-4])))
        expect_refused(bytes(newer), "format version 2")
        # A NaN written into the tensors, a flipped byte, a cut-short file, garbage.
        _, archive_at = checkpoint_sections(contents)
        nan_in_tensors = bytearray(contents)
        middle = (archive_at + len(contents)) // 2
        nan_in_tensors[middle:middle + 4] = struct.pack("<f", float("nan"))
        expect_refused(bytes(nan_in_tensors), "corrupted")
        expect_refused(contents[: len(contents) // 2], "truncated")
        expect_refused(b"not a checkpoint at all", "not a BitTorch checkpoint")
        output = run(MNIST, "--epochs", "0", "--load", path + ".none", *SMALL, expect_code=1)
        assert "cannot open" in output and path + ".none" in output, output
        # Not a regular file: refused at once.
        os.mkfifo(os.path.join(tmp, "fifo"))
        for not_a_file in ("/dev/zero", tmp, os.path.join(tmp, "fifo")):
            output = run(MNIST, "--epochs", "0", "--load", not_a_file, *SMALL, expect_code=1, timeout=60)
            assert "not a regular file" in output, output


def metrics_without_time(path):
    with open(path) as f:
        doc = json.load(f)
    timing = {"seconds", "samples_per_second"}
    return [[{k: v for k, v in e.items() if k not in timing} for e in r["epochs"]] for r in doc["runs"]]


def case_resume_equals_an_uninterrupted_run():
    """Training N epochs equals training k, saving, and resuming for N - k: the same losses and
    accuracies to the last bit, with the cosine schedule (the run stopped early) and with a
    constant one (the run extended). On one thread: with more, MKL's products differ from run
    to run in the last bits (one uninterrupted run in about 12 differs from the others), and a
    resumed run then agrees with an uninterrupted one only as well as two of those agree."""
    with tempfile.TemporaryDirectory() as tmp:
        f = lambda name: os.path.join(tmp, name)
        for schedule in ("cosine", "constant"):
            common = ["--lr-schedule", schedule, "--threads", "1", *SMALL]
            run(MNIST, "--epochs", "3", "--metrics-json", f("whole.json"), *common)
            if schedule == "cosine":
                run(MNIST, "--epochs", "3", "--stop-after-epoch", "1", "--save", f("ck.pt"), *common)
            else:
                run(MNIST, "--epochs", "1", "--save", f("ck.pt"), *common)
            output = run(MNIST, "--epochs", "3", "--resume", f("ck.pt"), "--save", f("ck.pt"),
                         "--metrics-json", f("resumed.json"), *common)
            assert "resuming" in output, output
            whole, resumed = metrics_without_time(f("whole.json")), metrics_without_time(f("resumed.json"))
            assert len(whole[0]) == 3 and whole == resumed, (schedule, whole, resumed)
        # Resuming with other settings would train another run: refused, naming the setting.
        output = run(MNIST, "--epochs", "3", "--resume", f("ck.pt"), "--batch-size", "64", "--lr-schedule", "constant",
                     *SMALL, expect_code=1)
        assert "field settings.batch_size is 128" in output and "64" in output, output
        output = run(MNIST, "--epochs", "3", "--resume", f("ck.pt"), "--lr", "0.002", "--lr-schedule", "constant",
                     *SMALL, expect_code=1)
        assert "field settings.lr is 0.001" in output and "0.002" in output, output
        output = run(MNIST, "--epochs", "3", "--resume", f("ck.pt"), "--gradient-bits", "8", "--lr-schedule",
                     "constant", *SMALL, expect_code=1)
        assert "gradient_bits" in output, output
        # Other images of the same number: the data's digest differs.
        other = broken_copy(tmp, FILES[0], lambda b: gzip.compress(gzip.decompress(b)[:16] +
                                                                    bytes(255 - c for c in gzip.decompress(b)[16:])))
        output = run(MNIST, "--epochs", "3", "--resume", f("ck.pt"), "--data-dir", other, "--lr-schedule", "constant",
                     *SMALL, expect_code=1)
        assert "field settings.train_crc32" in output, output


def case_training_divergence_stops_the_run():
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.json")
        output = run(MNIST, "--epochs", "2", "--lr", "1e12", "--metrics-json", metrics, *SMALL, expect_code=1)
        assert "diverged" in output and "--lr" in output, output
        assert not os.path.exists(metrics) or "null" not in open(metrics).read()
    output = run(XOR, "--lr", "1e30", "--steps", "500", expect_code=1)
    assert "diverged" in output, output


def case_output_paths_are_checked_before_training():
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        for flags, needle in ((["--save", os.path.join(tmp, "no", "such", "dir", "m.pt")], "--save"),
                              (["--metrics-json", tmp], "is a directory"),
                              (["--export", "/dev/null"], "character device"),
                              (["--save", os.path.join(tmp, "a"), "--export", os.path.join(tmp, "a")], "same file")):
            output = run(MNIST, *flags, expect_code=2)
            assert needle in output and "Usage" in output, (flags, output)
            assert "epoch" not in output, output  # nothing was trained
        assert time.monotonic() - started < 60
        assert os.listdir(tmp) == [], os.listdir(tmp)


def case_outputs_never_replace_inputs():
    """An output path that names an input or another output, through a symbolic link (also
    one that dangles until the run writes its target), a hard link or another spelling, is
    refused before any work with both flags named, and the file is left as it was; --save
    may name the checkpoint --resume continues."""
    with tempfile.TemporaryDirectory() as tmp:
        def path(name):
            return os.path.join(tmp, name)

        def refused(program, *flags, names):
            output = run(program, *flags, expect_code=2)
            assert "same file" in output and all(f"--{n}" in output for n in names), (flags, output)
            assert "epoch 1" not in output and "step" not in output, output  # nothing was trained

        os.symlink("s1", path("s1link"))  # dangling until --save writes s1
        refused(MNIST, "--epochs", "1", *SMALL, "--save", path("s1"), "--metrics-json", path("s1link"),
                names=("save", "metrics-json"))
        run(MNIST, "--epochs", "1", "--lr-schedule", "constant", *SMALL, "--save", path("m.pt"))
        before = open(path("m.pt"), "rb").read()
        os.link(path("m.pt"), path("hard.pt"))
        refused(MNIST, "--epochs", "1", *SMALL, "--load", path("m.pt"), "--export", path("m.pt"),
                names=("export", "load"))
        refused(MNIST, "--epochs", "1", *SMALL, "--load", path("m.pt"), "--export", path("hard.pt"),
                names=("export", "load"))
        refused(MNIST, "--epochs", "1", *SMALL, "--resume", path("m.pt"), "--metrics-json",
                os.path.join(tmp, ".", "m.pt"), names=("metrics-json", "resume"))
        assert open(path("m.pt"), "rb").read() == before, "the checkpoint was touched"
        output = run(MNIST, "--epochs", "2", "--lr-schedule", "constant", *SMALL, "--resume", path("m.pt"), "--save",
                     path("m.pt"))
        assert "resuming" in output, output
        lm = ["--preset", "tiny", "--steps", "2", "--eval-interval", "1", "--eval-windows", "2", "--batch-size", "2",
              "--no-progress"]
        refused(LM, "train", *lm, "--resume", path("r.ckpt"), "--metrics-json", path("r.ckpt"),
                names=("metrics-json", "resume"))
        os.symlink("s", path("slink"))
        refused(LM, "train", *lm, "--save", path("s"), "--metrics-json", path("slink"), names=("save", "metrics-json"))
        os.remove(path("hard.pt"))  # the resumed run replaced m.pt by a new file: link that one
        os.link(path("m.pt"), path("hard.pt"))
        refused(LM, "export", "--checkpoint", path("m.pt"), "--output", path("hard.pt"), names=("output", "checkpoint"))
        output = run(LM, "export", "--checkpoint", path("m.pt"), "--output", "", expect_code=2)
        assert "--output: the output path is empty" in output, output


def packed_mlp_file(path, layers):
    """A packed model file (docs/packed-format.md, version 3) of a Sequential holding `layers`:
    ("packed", in, out) for a PackedTernaryLinear of zero codes and unit scales, ("relu",)."""
    records = [("", 3, [], [], [])]
    for index, layer in enumerate(layers):
        if layer[0] == "relu":
            records.append((str(index), 2, [], [], []))
        else:
            _, inputs, outputs = layer
            codes = bytes([121]) * ((inputs * outputs + 4) // 5)  # five zero codes per byte
            records.append((str(index), 1, [inputs, outputs, 0, 0, 1, 0], [0.05],
                            [codes, struct.pack(f"<{outputs}f", *([1.0] * outputs))]))
    out = bytearray(b"BTPACK\r\n" + struct.pack("<II", 3, len(records)))
    for name, kind, ints, reals, arrays in records:
        out += struct.pack("<I", len(name)) + name.encode() + struct.pack("<BB", kind, 0)
        out += struct.pack("<I", len(ints)) + struct.pack(f"<{len(ints)}q", *ints)
        out += struct.pack("<I", len(reals)) + struct.pack(f"<{len(reals)}d", *reals)
        out += struct.pack("<I", len(arrays)) + b"".join(struct.pack("<Q", len(a)) + a for a in arrays)
    out += struct.pack("<I", zlib.crc32(out))
    with open(path, "wb") as f:
        f.write(out)


def case_infer_refuses_what_is_no_mnist_model():
    """bittorch-infer names the file when it holds no ternary layer, or a model that does not
    map an image to ten scores (it printed 0.00% or failed inside the loss before)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, layers, needle in (("empty.btp", [("relu",)], "holds no packed ternary layer"),
                                     ("five.btp", [("packed", 784, 5)], "one per class, 10"),
                                     ("wide.btp", [("packed", 100, 10)], "does not take a 784-pixel image")):
            path = os.path.join(tmp, name)
            packed_mlp_file(path, layers)
            output = run(INFER, "--model", path, "--test-limit", "10", expect_code=1)
            assert name in output and needle in output, output
        path = os.path.join(tmp, "ok.btp")
        packed_mlp_file(path, [("packed", 784, 10)])
        assert "test accuracy" in run(INFER, "--model", path, "--test-limit", "10")


def case_lm_refuses_what_cannot_work():
    """Sizes and settings that cannot give a run are refused before any work, naming the flag:
    a decay that erases the weights, more evaluation windows than the text has, more bytes to
    sample than the stated limit, a model or batch larger than the machine; a run whose model
    collapses to the uniform prediction stops with a message instead of training on."""
    tiny = ["--preset", "tiny", "--steps", "2", "--eval-interval", "1", "--eval-windows", "2", "--batch-size", "2",
            "--no-progress"]
    for flags, needle in ((["--model", "fp", "--weight-decay", "1e12"], " --lr x --weight-decay"),
                          (["--weight-decay", "400"], "--ternary-lr x --weight-decay"),
                          (["--eval-windows", "100000000"], "--eval-windows must be at most"),
                          (["--sample", "100000000"], "--sample must be at most"),
                          (["--layers", "1000000000000"], "--preset/--layers"),
                          (["--batch-size", "1000000000000"], "--batch-size/--context")):
        output = run(LM, "train", *tiny, *flags, expect_code=2)
        assert needle in output and "epoch" not in output, (flags, output)
    output = run(LM, "sample", "--packed", "x.btp", "--tokens", "100000000", expect_code=2)
    assert "--tokens must be at most" in output, output
    # The bench too: a model larger than the machine is refused, not killed for its memory.
    for flags, needle in ((["--layers", "1000000000000"], "--preset/--layers"),
                          (["--preset", "bitnet-2b4t", "--batch-size", "1000000000"], "--batch-size/--context")):
        output = run(LM, "bench", "--parts", "train", *flags, expect_code=2)
        assert needle in output and "training this model takes at least" in output, (flags, output)
    output = run(LM, "train", "--model", "fp", "--preset", "tiny", "--steps", "8", "--eval-interval", "2",
                 "--eval-windows", "4", "--batch-size", "4", "--warmup", "0", "--lr", "1e-8", "--weight-decay", "9e7",
                 "--no-progress", expect_code=1)
    assert "collapsed" in output and "ln(256)" in output, output


def case_lm_corpus_memory():
    """A corpus is held as one byte per byte of text (plus the reading's growth), not as int64
    tokens: 96 MB of text add under three times their size to the peak memory (int64 tokens
    took ten times)."""
    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(5)
        small, big = os.path.join(tmp, "small.txt"), os.path.join(tmp, "big.txt")
        line = "".join(rng.choice("abcdefghij klmnop\n") for _ in range(1 << 16)).encode()
        with open(small, "wb") as f:
            f.write(line)
        with open(big, "wb") as f:
            for _ in range(96 << 4):
                f.write(line)
        flags = ["train", "--preset", "tiny", "--steps", "1", "--eval-interval", "1", "--eval-windows", "2",
                 "--batch-size", "2", "--no-progress", "--threads", "1", "--val-file", small]
        code, small_mb, err = peak_memory_mb(LM, *flags, "--train-file", small)
        assert code == 0, err
        code, big_mb, err = peak_memory_mb(LM, *flags, "--train-file", big)
        assert code == 0, err
        size_mb = os.path.getsize(big) / 2**20
        print(f"peak memory with a 64 KB corpus {small_mb:.0f} MB, with a {size_mb:.0f} MB one {big_mb:.0f} MB")
        assert big_mb - small_mb < 3 * size_mb, (small_mb, big_mb, size_mb)


def limit_file_size(limit):
    def apply():
        # A full disk, as far as the program can tell: writes past `limit` bytes fail (EFBIG).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def case_failed_writes_keep_the_earlier_file():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        run(MNIST, "--epochs", "1", "--save", path, *SMALL)
        with open(path, "rb") as f:
            before = f.read()
        output = run(MNIST, "--epochs", "1", "--save", path, "--seed", "7", *SMALL, expect_code=1,
                     preexec_fn=limit_file_size(len(before) // 2))
        assert path in output and "File too large" in output, output
        assert os.listdir(tmp) == ["model.pt"], os.listdir(tmp)  # the temporary file was removed
        with open(path, "rb") as f:
            assert f.read() == before
        run(MNIST, "--epochs", "0", "--load", path, *SMALL)
        # The same for a packed model file (save_packed used a fixed temporary name once).
        model = os.path.join(tmp, "model.btp")
        run(MNIST, "--epochs", "1", "--export", model, *SMALL)
        with open(model, "rb") as f:
            exported = f.read()
        output = run(MNIST, "--epochs", "1", "--export", model, "--seed", "7", *SMALL, expect_code=1,
                     preexec_fn=limit_file_size(len(exported) // 2))
        assert model in output and "File too large" in output, output
        assert sorted(os.listdir(tmp)) == ["model.btp", "model.pt"], os.listdir(tmp)
        with open(model, "rb") as f:
            assert f.read() == exported


def case_killed_runs_leave_whole_files():
    """SIGKILL at random moments of a run that saves a checkpoint every epoch: what is left is
    the last whole checkpoint (or none), never a partial file. The epochs are tiny (100
    images), so most of the run is spent writing checkpoints and the kills land inside writes.
    Where the filesystem has unnamed files (O_TMPFILE) nothing else is left; elsewhere a kill
    can leave the writer's named temporary file, which the next write to the path removes."""
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt")
        for attempt in range(8):
            process = subprocess.Popen([MNIST, "--epochs", "100000", "--save", path, "--train-limit", "100",
                                        "--test-limit", "100", "--no-progress"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.0, 4.0))
            process.kill()
            process.wait()
            left = set(os.listdir(tmp)) - {"model.pt"}
            assert all(name.startswith(".model.pt.tmp-") for name in left), (attempt, os.listdir(tmp))
            if os.path.exists(path):
                run(MNIST, "--epochs", "0", "--load", path, "--test-limit", "200", "--no-progress")
        run(MNIST, "--epochs", "1", "--save", path, *SMALL)
        assert os.listdir(tmp) == ["model.pt"], os.listdir(tmp)


def write_idx(path, magic, count, dims, payload_bytes):
    """A gzipped IDX file whose header announces `count` items, followed by `payload_bytes`
    bytes of zeros (streamed, so that large payloads cost no memory here)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">II", magic, count) + b"".join(struct.pack(">I", d) for d in dims))
        chunk = bytes(1 << 20)
        for start in range(0, payload_bytes, len(chunk)):
            f.write(chunk[: min(len(chunk), payload_bytes - start)])


def peak_memory_mb(*args):
    """Runs a command in a child process and returns its peak resident memory in MB."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(r.stderr.decode())")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    returncode, peak_kb = result.stdout.split()
    return int(returncode), int(peak_kb) / 1024, result.stderr


def case_data_limits_bound_memory():
    """--train-limit keeps only what it keeps (a set announcing 200,000 images, 157 MB of
    pixels, costs no more memory than a small one), and no file is read past the size its
    header announces."""
    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "big")
        shutil.copytree(DATA, big)
        for name in FILES[:2]:
            os.chmod(os.path.join(big, name), 0o644)
        count = 200_000
        write_idx(os.path.join(big, FILES[0]), 0x803, count, (28, 28), count * 784)
        write_idx(os.path.join(big, FILES[1]), 0x801, count, (), count)
        flags = ["--epochs", "1", "--train-limit", "100", "--test-limit", "100", "--no-progress"]
        code, small_mb, err = peak_memory_mb(MNIST, *flags)
        assert code == 0, err
        code, big_mb, err = peak_memory_mb(MNIST, "--data-dir", big, *flags)
        assert code == 0, err
        print(f"peak memory with the embedded set {small_mb:.0f} MB, with a 200,000-image set {big_mb:.0f} MB")
        assert big_mb < small_mb + 100, (small_mb, big_mb)
        # The header announces 10 images; the stream holds 200 MB more: refused after one byte too many.
        long = os.path.join(tmp, "long")
        shutil.copytree(DATA, long)
        os.chmod(os.path.join(long, FILES[2]), 0o644)
        write_idx(os.path.join(long, FILES[2]), 0x803, 10, (28, 28), 200 << 20)
        os.chmod(os.path.join(long, FILES[3]), 0o644)
        write_idx(os.path.join(long, FILES[3]), 0x801, 10, (), 10)
        started = time.monotonic()
        output = run(MNIST, "--data-dir", long, *SMALL, expect_code=1)
        assert "longer than the 10 items its header announces" in output, output
        assert time.monotonic() - started < 30


def case_installed_apps_run():
    """`cmake --install`: the installed programs find libbittorch and LibTorch (RPATH) and the
    installed data, from any working directory, with the source checkout's data out of reach."""
    build_dir = os.path.dirname(BIN)
    cmake = os.environ.get("CMAKE_COMMAND", "cmake")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "prefix")
        run(cmake, "--install", build_dir, "--prefix", prefix)
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        installed_data = os.path.join(prefix, "share", "bittorch", "mnist-10k")
        assert set(FILES) <= set(os.listdir(installed_data)), os.listdir(installed_data)
        mnist = os.path.join(prefix, "bin", "bittorch-mnist")
        model = os.path.join(tmp, "m.btp")
        output = run(mnist, "--epochs", "1", "--train-limit", "500", "--test-limit", "200", "--no-progress",
                     "--export", model, cwd=tmp, env=env)
        assert f"samples from {installed_data}" in output, output
        output = run(os.path.join(prefix, "bin", "bittorch-infer"), "--model", model, "--test-limit", "200",
                     cwd="/", env=env)
        assert "test accuracy" in output, output
        run(os.path.join(prefix, "bin", "bittorch-xor"), "--steps", "10", cwd="/", env=env)
        # bittorch-lm finds the installed Shakespeare.
        output = run(os.path.join(prefix, "bin", "bittorch-lm"), "train", *LM_TINY, "--steps", "2",
                     "--eval-interval", "2", cwd="/", env=env)
        assert "training and" in output and "best val loss" in output, output


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


# bittorch-lm: the tiny preset on the embedded Shakespeare, small batches.
LM_TINY = ["--preset", "tiny", "--batch-size", "16", "--eval-windows", "32", "--warmup", "20", "--no-progress"]


def lm_evaluations(path):
    with open(path) as f:
        doc = json.load(f)
    timing = {"seconds", "tokens_per_second"}
    return [[{k: v for k, v in e.items() if k not in timing} for e in r["evaluations"]] for r in doc["runs"]]


def assert_same_losses(got, want, tolerance):
    """Evaluation by evaluation, the validation and training losses within `tolerance`."""
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        for key in ("val_loss", "train_loss"):
            assert abs(g[key] - w[key]) < tolerance, (key, got, want)


def case_lm_tiny_learns():
    """300 steps of the tiny ternary model and of the fp one on the same batches: both get
    well below the 5.55 nats of a uniform byte (and below the bound set from measured runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "lm.json")
        started = time.monotonic()
        output = run(LM, "train", *LM_TINY, "--compare", "--steps", "300", "--metrics-json", metrics)
        elapsed = time.monotonic() - started
        with open(metrics) as f:
            doc = json.load(f)
        assert [r["model"] for r in doc["runs"]] == ["fp", "ternary"], doc
        for r in doc["runs"]:
            losses = [e["val_loss"] for e in r["evaluations"]]
            assert len(losses) == 3 and losses[-1] < losses[0], (r["model"], losses)
            assert r["best_val_loss"] < 2.9, (r["model"], losses, output)
            assert abs(r["evaluations"][-1]["val_bits_per_byte"] - losses[-1] / 0.6931471805599453) < 1e-9
            # Every step's loss, whose mean over an interval is the interval's training loss.
            for e in r["evaluations"]:
                assert len(e["step_losses"]) == 100, len(e["step_losses"])
                assert abs(sum(e["step_losses"]) / 100 - e["train_loss"]) < 1e-9 * e["train_loss"], e
        assert "bits per byte" in output and "ternary" in output, output
        if shutil.which("gnuplot"):
            png = os.path.join(tmp, "lm.png")
            run("bash", os.path.join(SCRIPTS, "plot_metrics.sh"), metrics, png)
            with open(png, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        print(f"lm_tiny_learns: {elapsed:.1f} s, {[r['best_val_loss'] for r in doc['runs']]}")


def case_lm_resume_sample_and_export():
    with tempfile.TemporaryDirectory() as tmp:
        f = lambda name: os.path.join(tmp, name)
        common = [*LM_TINY, "--steps", "40", "--eval-interval", "10", "--threads", "1"]
        run(LM, "train", *common, "--metrics-json", f("whole.json"))
        run(LM, "train", *common, "--stop-after-eval", "2", "--save", f("ck.pt"))
        output = run(LM, "train", *common, "--resume", f("ck.pt"), "--save", f("ck.pt"), "--export", f("lm.btp"),
                     "--metrics-json", f("resumed.json"))
        assert "resuming" in output, output
        whole, resumed = lm_evaluations(f("whole.json")), lm_evaluations(f("resumed.json"))
        assert len(whole[0]) == 4 and whole == resumed, (whole, resumed)
        # Activation checkpointing: the same run, to float32's summation order.
        run(LM, "train", *common, "--checkpoint-activations", "--metrics-json", f("recomputed.json"))
        recomputed = lm_evaluations(f("recomputed.json"))
        for plain, again in zip(whole[0], recomputed[0], strict=True):
            for field in ("train_loss", "val_loss"):
                assert abs(plain[field] - again[field]) < 1e-4 * plain[field], (field, plain, again)
        output = run(LM, "train", *common, "--resume", f("ck.pt"), "--batch-size", "8", expect_code=1)
        assert "field settings.batch_size is 16" in output, output
        # Sampling: the same seed gives the same text. The checkpoint (packed in memory) and a
        # file exported from it with float32 full-precision layers give the same text; the
        # bfloat16 files of train --export and of export (the default) agree with each other.
        sample = ["--prompt", "ROMEO:", "--tokens", "60", "--seed", "3"]
        first, _ = run_split(LM, "sample", "--checkpoint", f("ck.pt"), *sample)
        again, _ = run_split(LM, "sample", "--checkpoint", f("ck.pt"), *sample)
        assert first == again and first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 60 + 1, first
        run(LM, "export", "--checkpoint", f("ck.pt"), "--output", f("f32.btp"), "--dtype", "float32")
        exact, _ = run_split(LM, "sample", "--packed", f("f32.btp"), *sample)
        assert exact == first, (first, exact)
        run(LM, "export", "--checkpoint", f("ck.pt"), "--output", f("exported.btp"))
        assert os.path.getsize(f("exported.btp")) < os.path.getsize(f("f32.btp"))
        from_train, _ = run_split(LM, "sample", "--packed", f("lm.btp"), *sample)
        exported, _ = run_split(LM, "sample", "--packed", f("exported.btp"), *sample)
        assert exported == from_train and exported.startswith("ROMEO:"), (from_train, exported)
        # The classifier app given a language model points to the app that runs it.
        output = run(INFER, "--model", f("exported.btp"), expect_code=1)
        assert "holds a language model" in output and "bittorch-lm sample --packed" in output, output
        other, _ = run_split(LM, "sample", "--checkpoint", f("ck.pt"), *sample[:-1], "4")
        assert other != first, other
        # Several continuations generated together, each under its own heading.
        batch, _ = run_split(LM, "sample", "--packed", f("f32.btp"), *sample, "--batch", "3")
        texts = batch.split("--- ")[1:]
        assert len(texts) == 3 and batch.startswith("--- 1\n"), batch
        for number, text in enumerate(texts, 1):
            assert text.startswith(f"{number}\nROMEO:") and len(text) == len(f"{number}\n") + len(first), batch
        output = run(LM, "sample", "--packed", f("f32.btp"), "--batch", "0", expect_code=2)
        assert "--batch" in output, output
        output = run(LM, "sample", expect_code=2)
        assert "--checkpoint" in output, output


def case_lm_data_parallel():
    """bittorch-lm train under torchrun, two processes on the CPU (Gloo), --batch-size 4 each:
    the same evaluations as one process with --batch-size 8 (each rank takes its half of every
    step's batch; validation sums are all-reduced); rank 0 alone writes metrics and checkpoints;
    a checkpoint of the two-process run resumes in one process."""
    torch_python = os.environ["BITTORCH_TORCH_PYTHON"]
    torchrun = [torch_python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
    with tempfile.TemporaryDirectory() as tmp:
        f = lambda name: os.path.join(tmp, name)
        common = [*LM_TINY, "--model", "ternary", "--steps", "30", "--eval-interval", "10", "--threads", "1"]
        one_process = [*common[:2], *common[4:]]  # without --batch-size 16
        run(LM, "train", *one_process, "--batch-size", "8", "--metrics-json", f("one.json"))
        output = run(*torchrun, LM, "train", *one_process, "--batch-size", "4", "--metrics-json", f("two.json"),
                     "--save", f("two.ckpt"), "--stop-after-eval", "2")
        assert "data parallel: 2 processes (Gloo)" in output and output.count("epoch 1/3: train loss") == 1, output
        run(LM, "train", *one_process, "--batch-size", "8", "--resume", f("two.ckpt"),
            "--metrics-json", f("resumed.json"))
        one, two, resumed = (lm_evaluations(f(name))[0] for name in ("one.json", "two.json", "resumed.json"))
        assert len(one) == 3 and len(two) == 2 and len(resumed) == 3, (one, two, resumed)
        # Where a step's backward spent its time: the Reducer samples steps 1-10, then every 100th.
        times = json.load(open(f("two.json")))["runs"][0]["all_reduce"]
        assert times["step"] == 10 and 0 <= times["overlap_ms"] <= min(times["all_reduce_ms"],
                                                                        times["backward_compute_ms"]), times
        assert abs(times["exposed_ms"] - (times["all_reduce_ms"] - times["overlap_ms"])) < 1e-9, times
        assert "all_reduce" not in json.load(open(f("one.json")))["runs"][0]
        assert_same_losses(two, one[:2], 1e-4)
        assert_same_losses(resumed, one, 1e-4)
        # ZeRO stage 1 (--shard-optimizer): the evaluations of plain data parallelism, rank 0
        # holding about half the AdamW state; its checkpoint (the state gathered on rank 0)
        # resumes in one process exactly as the unsharded run's does.
        output = run(*torchrun, LM, "train", *one_process, "--batch-size", "4", "--shard-optimizer",
                     "--metrics-json", f("sharded.json"), "--save", f("sharded.ckpt"), "--stop-after-eval", "2")
        assert "sharded over 2 ranks" in output, output
        sharded_doc = json.load(open(f("sharded.json")))["runs"][0]
        full_state = 8 * sharded_doc["parameters"]
        assert 0.4 * full_state <= sharded_doc["optimizer_state_bytes_rank0"] <= 0.6 * full_state, sharded_doc
        sharded = lm_evaluations(f("sharded.json"))[0]
        assert_same_losses(sharded, two, 1e-6)
        run(LM, "train", *one_process, "--batch-size", "8", "--resume", f("sharded.ckpt"),
            "--metrics-json", f("sharded_resumed.json"))
        assert lm_evaluations(f("sharded_resumed.json"))[0] == resumed, (resumed, f("sharded_resumed.json"))
        # ZeRO stage 2 (--shard-gradients), with each block recomputed in the backward: each
        # gradient reduced to its owner, the norm for clipping summed over the ranks; the
        # evaluations of plain data parallelism again.
        run(*torchrun, LM, "train", *one_process, "--batch-size", "4", "--shard-gradients", "--checkpoint-activations",
            "--metrics-json", f("stage2.json"), "--stop-after-eval", "2", "--save", f("stage2.ckpt"))
        stage2 = lm_evaluations(f("stage2.json"))[0]
        assert_same_losses(stage2, two, 1e-6)
        # Its checkpoint (moments gathered on rank 0) resumes in one process as the others do.
        run(LM, "train", *one_process, "--batch-size", "8", "--resume", f("stage2.ckpt"),
            "--metrics-json", f("stage2_resumed.json"))
        assert_same_losses(lm_evaluations(f("stage2_resumed.json"))[0], resumed, 1e-5)
        # Gradient accumulation: the Trainer synchronizes on a step's last micro-batch only.
        accumulate = [*one_process, "--steps", "20", "--accumulation", "2"]
        run(LM, "train", *accumulate, "--batch-size", "8", "--metrics-json", f("one_acc.json"))
        run(*torchrun, LM, "train", *accumulate, "--batch-size", "4", "--metrics-json", f("two_acc.json"))
        one_acc, two_acc = (lm_evaluations(f(name))[0] for name in ("one_acc.json", "two_acc.json"))
        assert len(one_acc) == 2 and len(two_acc) == 2, (one_acc, two_acc)
        assert_same_losses(two_acc, one_acc, 1e-4)
        print(f"lm_data_parallel: one process {[e['val_loss'] for e in one]}, two {[e['val_loss'] for e in two]}")


def case_lm_bench_profile():
    """bittorch-lm bench --profile: a Chrome trace per training variant and per decoded model, and
    each outermost op's time in the results (the fused classifier and the fused AdamW in
    training, the decode attention and the packed kernel in generation); refused where the
    directory cannot be."""
    with tempfile.TemporaryDirectory() as tmp:
        traces, out = os.path.join(tmp, "traces"), os.path.join(tmp, "bench.json")
        run(LM, "bench", "--preset", "tiny", "--parts", "train", "--train-steps", "1", "--batch-size", "2",
            "--profile", traces, "--json", out, "--log-level", "warn", "--threads", "1")
        for entry in json.load(open(out))["train"]:
            trace = json.load(open(os.path.join(traces, f"train_{entry['variant']}.trace.json")))
            assert len(trace["traceEvents"]) > 100, entry["variant"]
            profile = entry["profile"]
            names = [op["name"] for op in profile["ops"]]
            assert profile["steps"] == 3 and profile["wall_ms"] > 0 and profile["device_busy_ms"] == 0, profile
            for needed in ("bittorch::linear_cross_entropy", "aten::_fused_adamw_"):
                assert needed in names, (entry["variant"], names)
            calls = {op["name"]: op["calls"] for op in profile["ops"]}
            assert calls["bittorch::linear_cross_entropy"] == 3, calls  # one per profiled step
            # One thread: the outermost ops do not overlap, so their time fits in the profile's.
            assert sum(op["host_ms"] for op in profile["ops"]) <= profile["wall_ms"] * 1.01, profile
        # Generation: 16 more decode steps of each model at batch 1 under the profiler.
        run(LM, "bench", "--preset", "tiny", "--parts", "generate", "--generate-tokens", "4", "--profile", traces,
            "--json", out, "--log-level", "warn", "--threads", "1")
        generate = json.load(open(out))["generate"]
        for model in ("baseline", "packed"):
            profile = generate[f"{model}_profile"]
            assert profile["steps"] == 16 and profile["wall_ms"] > 0 and profile["device_busy_ms"] == 0, profile
            names = [op["name"] for op in profile["ops"]]
            assert "bittorch::decode_attention" in names, (model, names)
            assert len(json.load(open(os.path.join(traces, f"generate_{model}.trace.json")))["traceEvents"]) > 100
        assert "bittorch::packed_ternary_linear" in [op["name"] for op in generate["packed_profile"]["ops"]]
        open(os.path.join(tmp, "file"), "w").close()
        output = run(LM, "bench", "--parts", "train", "--profile", os.path.join(tmp, "file"), expect_code=2)
        assert "--profile" in output and "file" in output, output


def case_lm_bench_variants():
    """bittorch-lm bench --variants: the training variants named, in that order, each once
    (ternary_a8_g8: 8-bit activations and FP8 gradients); an unknown name is refused. And
    --packed-activation-bits 8: generation timed on a packed model of 8-bit activations; other
    widths refused."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        run(LM, "bench", "--preset", "tiny", "--parts", "train", "--train-steps", "1", "--batch-size", "2",
            "--variants", "ternary_a8_g8,baseline,ternary_a8_g8", "--json", out, "--log-level", "warn",
            "--threads", "1")
        runs = json.load(open(out))["train"]
        assert [r["variant"] for r in runs] == ["ternary_a8_g8", "baseline"], runs
        assert all(r["tokens_per_second"] > 0 for r in runs), runs
    output = run(LM, "bench", "--variants", "ternary,fp8", expect_code=2)
    assert "--variants takes" in output and "ternary_a8_g8" in output and "'ternary,fp8'" in output, output
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        run(LM, "bench", "--preset", "tiny", "--parts", "generate", "--generate-tokens", "4",
            "--packed-activation-bits", "8", "--json", out, "--log-level", "warn", "--threads", "1")
        generate = json.load(open(out))["generate"]
        assert generate["packed_activation_bits"] == 8 and generate["packed_tokens_per_second"] > 0, generate
    output = run(LM, "bench", "--parts", "generate", "--packed-activation-bits", "4", expect_code=2)
    assert "--packed-activation-bits" in output and "4" in output, output


def case_lm_profile_breakdown_reads_kineto_traces():
    """bench/lm_profile_breakdown.py on a trace laid out as Kineto writes them (the kernels tied
    to their launches by correlation id, not to the ops' external ids, as in real traces): each
    kernel's phase from where it was launched, through the runtime or, as cuBLAS launches, the
    driver (an autograd node on another thread: backward; an optimizer step: optimizer), its kind
    from its name, the GPU's idle time between them, and the costliest kernels by name."""
    def op(name, tid, ts, dur, external):
        return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur,
                "args": {"External id": external}}

    def launch(tid, ts, correlation, category="cuda_runtime", name="cudaLaunchKernel"):
        return {"ph": "X", "cat": category, "name": name, "pid": 1, "tid": tid, "ts": ts,
                "dur": 2, "args": {"External id": correlation, "correlation": correlation}}

    def kernel(name, ts, dur, correlation):
        return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": ts, "dur": dur,
                "args": {"External id": correlation, "correlation": correlation, "stream": 7}}

    events = [
        op("aten::mm", 1, 0, 10, 1), launch(1, 5, 101), kernel("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT", 20, 300, 101),
        op("bittorch::add_rms_norm", 1, 10, 10, 2), launch(1, 15, 102), kernel("add_rms_norm_kernel<bf16>", 320, 50, 102),
        op("autograd::engine::evaluate_function: MmBackward0", 2, 30, 20, 3), op("aten::mm", 2, 32, 15, 4),
        launch(2, 40, 103, "cuda_driver", "cuLaunchKernelEx"),
        kernel("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", 400, 600, 103),
        {"ph": "X", "cat": "user_annotation", "name": "Optimizer.step#AdamW.step", "pid": 1, "tid": 1, "ts": 60,
         "dur": 30, "args": {"External id": 5}},
        launch(1, 70, 104), kernel("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<float>",
                                   1100, 100, 104),
        launch(1, 95, 105), kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 1250, 50, 105),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trace, out = os.path.join(tmp, "train_ternary.trace.json"), os.path.join(tmp, "breakdown.json")
        with open(trace, "w") as f:
            json.dump({"traceEvents": events}, f)
        script = os.path.join(SCRIPTS, "..", "bench", "lm_profile_breakdown.py")
        output = run(sys.executable, script, trace, "--json", out, "--top", "2")
        result = json.load(open(out))["train_ternary.trace.json"]
        # The costliest kernels by name, the first two printed.
        assert [(k["name"][:12], k["ms"], k["kernels"]) for k in result["by_kernel"][:2]] == [
            ("nvjet_sm90_t", 0.6, 1), ("nvjet_tst_12", 0.3, 1)], result["by_kernel"]
        assert "the 2 costliest kernels" in output and "600.0 us" in output, output
        rows = {(row["phase"], row["kind"]): (row["ms"], row["kernels"]) for row in result["rows"]}
        assert rows == {("forward", "projections (GEMM)"): (0.3, 1), ("forward", "norms"): (0.05, 1),
                        ("backward", "projections (GEMM)"): (0.6, 1), ("optimizer", "other"): (0.1, 1),
                        ("forward", "communication"): (0.05, 1)}, (rows, output)
        # Kernels from 20 to 1300 us, busy 300 + 50 + 600 + 100 + 50: idle 30 + 0 + 100 + 50.
        assert result["span_ms"] == 1.28 and result["busy_ms"] == 1.1 and result["idle_ms"] == 0.18, result
        assert result["phases_ms"] == {"forward": 0.4, "backward": 0.6, "optimizer": 0.1}, result


def case_lm_pytorch_reference_has_the_same_model():
    """bench/lm_pytorch_reference.py (the plain-PyTorch model bittorch-lm's training speed is
    compared with) on the sizes of a bittorch-lm bench file: a model of the parameter count the
    architecture's formula gives, which starts from the uniform loss ln 256; eager steps timed
    and written (the GPU run adds torch.compile); a malformed flag is refused."""
    torch_python = os.environ["BITTORCH_TORCH_PYTHON"]
    reference = os.path.join(SCRIPTS, "..", "bench", "lm_pytorch_reference.py")
    with tempfile.TemporaryDirectory() as tmp:
        bench, out = os.path.join(tmp, "bench.json"), os.path.join(tmp, "reference.json")
        run(LM, "bench", "--preset", "tiny", "--parts", "train", "--train-steps", "1", "--batch-size", "2",
            "--json", bench, "--log-level", "warn")
        run(torch_python, reference, "--from-bench", bench, "--modes", "eager", "--steps", "2", "--warmup", "1",
            "--device", "cpu", "--json", out)
        result = json.load(open(out))
        m = result["model"]
        v, w, layers, hidden = m["vocab_size"], m["width"], m["layers"], m["mlp_ratio"] * m["width"]
        # embedding and head, per block q k v o, up and down, two norm gains; the final norm
        expected = 2 * v * w + layers * (4 * w * w + 2 * w * hidden + 2 * w) + w
        assert m["batch_size"] == 2 and [r["variant"] for r in result["runs"]] == ["baseline", "bitnet"], result
        for r in result["runs"]:
            assert r["parameters"] == expected, (r, expected)
            assert r["tokens_per_second"] > 0 and 5.0 < r["final_loss"] < 6.0, r  # ln 256 = 5.55
        bad = run(torch_python, reference, "--modes", "jit", expect_code=2)
        assert "--modes" in bad, bad


def case_mnist_data_parallel():
    """bittorch-mnist under torchrun, two CPU processes of --batch-size 32: the epochs of one
    process with --batch-size 64 (each rank its half of every step's batch; the last, short
    batch split evenly)."""
    torch_python = os.environ["BITTORCH_TORCH_PYTHON"]
    torchrun = [torch_python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--epochs", "2", "--train-limit", "2000", "--test-limit", "1000", "--no-progress", "--threads", "1"]
        run(MNIST, *common, "--batch-size", "64", "--metrics-json", os.path.join(tmp, "one.json"))
        run(*torchrun, MNIST, *common, "--batch-size", "32", "--metrics-json", os.path.join(tmp, "two.json"))
        epochs = []
        for name in ("one.json", "two.json"):
            with open(os.path.join(tmp, name)) as f:
                epochs.append(json.load(f)["runs"][0]["epochs"])
        for one, two in zip(*epochs):
            assert abs(one["train_loss"] - two["train_loss"]) < 1e-3, epochs
            assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 0.5, epochs
        print(f"mnist_data_parallel: {[(e['train_loss'], e['test_accuracy']) for e in epochs[1]]}")


def case_launch_failures_end_with_clear_errors():
    """A torchrun-style launch that cannot meet ends within its rendezvous timeout (a flag, or
    BITTORCH_RENDEZVOUS_TIMEOUT) with an error naming the address, the port and the ranks seen,
    saying what it waits for while it waits; ranks that disagree on WORLD_SIZE are told so."""
    import socket

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def launched(rank, world, port, *flags, address="127.0.0.1", env_timeout=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHELASTIC", "MASTER_", "RANK", "WORLD"))}
        env.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR=address,
                   MASTER_PORT=str(port))
        if env_timeout:
            env["BITTORCH_RENDEZVOUS_TIMEOUT"] = env_timeout
        return subprocess.Popen([MNIST, "--epochs", "1", *SMALL, *flags], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def ended(process, limit):
        start = time.monotonic()
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1 and time.monotonic() - start < limit, (process.returncode, err)
        return err

    port = free_port()
    err = ended(launched(0, 2, port, "--rendezvous-timeout", "7"), 60)
    assert f"127.0.0.1:{port}" in err and "1 of 2 ranks came; missing rank 1" in err, err
    assert "waiting" in err and "for rank 1" in err, err  # said while it waited
    port = free_port()  # nobody listens: the store is never reached
    err = ended(launched(1, 2, port, env_timeout="3"), 60)
    assert f"127.0.0.1:{port}" in err and "store was not reached" in err, err
    err = ended(launched(1, 2, free_port(), "--rendezvous-timeout", "3", address="no-such-host.invalid"), 60)
    assert "no-such-host.invalid" in err and "rendezvous of rank 1 of 2" in err, err
    port = free_port()
    first, second = launched(0, 2, port, "--rendezvous-timeout", "10"), launched(1, 3, port, "--rendezvous-timeout",
                                                                                  "10")
    errors = ended(first, 60) + ended(second, 60)
    assert "rank 1 has WORLD_SIZE 3" in errors and "same WORLD_SIZE" in errors, errors


def case_lm_bad_text_files():
    with tempfile.TemporaryDirectory() as tmp:
        f = lambda name: os.path.join(tmp, name)
        with open(f("empty.txt"), "w"):
            pass
        with open(f("short.txt"), "w") as out:
            out.write("to be or not to be")
        with open(os.path.join(DATA, "..", "shakespeare", "val.txt.gz"), "rb") as src:
            contents = src.read()
        with open(f("cut.txt.gz"), "wb") as out:
            out.write(contents[: len(contents) // 3])
        corrupted = bytearray(contents)
        corrupted[len(corrupted) // 2] ^= 0xFF
        with open(f("corrupt.txt.gz"), "wb") as out:
            out.write(bytes(corrupted))
        # What Python's gzip refuses: the trailer (CRC-32 and length) cut off, data after the
        # stream; what it accepts: two members one after another, zero padding.
        with open(f("no_trailer.txt.gz"), "wb") as out:
            out.write(contents[:-8])
        with open(f("garbage.txt.gz"), "wb") as out:
            out.write(contents + b"trailing garbage")
        with open(f("two_members.txt.gz"), "wb") as out:
            out.write(gzip.compress(b"first member, " * 40) + gzip.compress(b"second member. " * 40) + bytes(16))
        for path in (f("no_trailer.txt.gz"), f("garbage.txt.gz")):
            try:
                gzip.decompress(open(path, "rb").read())
                assert False, f"Python's gzip reads {path}"
            except (EOFError, OSError):
                pass
        run(LM, "train", *LM_TINY, "--steps", "1", "--val-file", f("two_members.txt.gz"))
        for path, needle in ((f("none.txt"), "cannot open"), (f("empty.txt"), "is empty"),
                             (f("short.txt"), "too few for one window of 65"), (f("cut.txt.gz"), "truncated"),
                             (f("corrupt.txt.gz"), "corrupted"), (tmp, "not a regular file"),
                             (f("no_trailer.txt.gz"), "truncated"), (f("garbage.txt.gz"), "no gzip member")):
            output = run(LM, "train", *LM_TINY, "--steps", "1", "--val-file", path, expect_code=1)
            assert path in output and needle in output and "--val-file" in output, (path, output)
            assert "terminate called" not in output, output
        output = run(LM, "train", *LM_TINY, "--train-file", f("short.txt"), "--val-file", f("short.txt"), "--steps",
                     "1", expect_code=1)
        assert "too few" in output and "--train-file" in output, output
        # A text of one's own is not validated on Shakespeare behind the user's back.
        output = run(LM, "train", *LM_TINY, "--train-file", f("two_members.txt.gz"), "--steps", "1", expect_code=2)
        assert "--train-file needs --val-file" in output, output
        # Another app's checkpoint is named for what it holds, in a line.
        run(MNIST, "--epochs", "1", *SMALL, "--save", f("mnist.ckpt"))
        output = run(LM, "sample", "--checkpoint", f("mnist.ckpt"), expect_code=1)
        assert "holds no bittorch-lm model but a ternary model of" in output and "bittorch-mnist" in output, output
        assert len(output) < 400, output
        output = run(LM, "frobnicate", expect_code=2)
        assert "unknown command 'frobnicate'" in output, output
        output = run(LM, "train", "--width", "30", "--heads", "4", expect_code=2)
        assert "width (30)" in output, output


if __name__ == "__main__":
    globals()["case_" + sys.argv[4]]()
    print(f"{sys.argv[4]}: passed")
