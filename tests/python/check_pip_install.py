"""The Python package as a user installs it: `pip wheel` of the checkout in a fresh virtual
environment, the wheel's contents, `pip install` of it, then `import bittorch` and an example
from outside the checkout.

usage: check_pip_install.py PYTHON LIBRARY SOURCE_DIR WORK_DIR

PYTHON is the interpreter with the pinned torch and scikit-build-core; the fresh environment
sees its packages through a .pth file, and pip runs without build isolation and without an
index, so nothing is downloaded. The wheel packages LIBRARY (this build's libbittorch) through
BITTORCH_PREBUILT_LIBRARY, so nothing is compiled twice."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path


def run(command, **kwargs):
    print("+", " ".join(str(c) for c in command), flush=True)
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
        sys.exit(f"check_pip_install.py: exit status {result.returncode}")
    return result.stdout


def main():
    python, library, source, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    if subprocess.run([python, "-c", "import scikit_build_core"], capture_output=True).returncode != 0:
        print(f"check_pip_install.py: skipped: {python} has no scikit-build-core (scripts/setup.sh installs it)")
        sys.exit(77)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    venv = work / "venv"
    run([python, "-m", "venv", venv])
    fresh = venv / "bin" / "python"
    pinned_site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    fresh_site = run([fresh, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(fresh_site, "pinned_torch.pth").write_text(pinned_site + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BITTORCH_LIBRARY")}
    pip = [fresh, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(pip + ["wheel", "--no-build-isolation", "--no-index", "--no-deps", "-w", work / "dist",
               "-C", f"cmake.define.BITTORCH_PREBUILT_LIBRARY={library}", "-C", f"build-dir={work / 'build'}", source],
        env=env)
    wheels = list((work / "dist").glob("bittorch-*.whl"))
    assert len(wheels) == 1, wheels
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for expected in ("bittorch/lib/libbittorch.so", "bittorch/__init__.py", "bittorch/nn/modules.py"):
        assert expected in names, f"{expected} not in the wheel: {sorted(names)}"
    # The wheel's metadata: CMakeLists.txt's version, the licence and its file.
    cmake_version = re.search(r"project\(BitTorch VERSION ([0-9.]+)", (source / "CMakeLists.txt").read_text())[1]
    metadata = zipfile.ZipFile(wheels[0]).read(f"bittorch-{cmake_version}.dist-info/METADATA").decode()
    for field in (f"Version: {cmake_version}", "License-Expression: MIT", "License-File: LICENSE"):
        assert field in metadata.splitlines(), f"the wheel's METADATA lacks '{field}':\n{metadata}"
    run(pip + ["install", "--no-index", wheels[0]], env=env)  # torch==2.11.0 is found through the .pth

    outside = work / "elsewhere"
    outside.mkdir()
    print(run([fresh, "-c", "import bittorch, torch\n"
               "from bittorch.nn import TernaryLinear\n"
               "assert 'site-packages' in bittorch.__file__, bittorch.__file__\n"
               "from importlib.metadata import version\n"
               "assert bittorch.__version__ == version('bittorch'), (bittorch.__version__, version('bittorch'))\n"
               "layer = TernaryLinear(64, 32)\n"
               "w, s = layer.get_quantized_weight()\n"
               "print('installed', bittorch.library_path(), layer(torch.randn(8, 64)).shape, torch.unique(w).tolist())"],
              cwd=outside, env=env))
    print(run([fresh, source / "examples" / "xor_mlp.py", "--steps", "500"], cwd=outside, env=env)[-200:])
    print(run([fresh, source / "examples" / "mnist_mlp_ternary.py", "--epochs", "1", "--train-limit", "2000"],
              cwd=outside, env=env)[-200:])
    print("pip install: ok")


if __name__ == "__main__":
    main()
