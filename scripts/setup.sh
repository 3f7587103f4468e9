#!/usr/bin/env bash
# Installs everything BitTorch needs to build and test, idempotently:
#   - Debian packages: compiler tools, spdlog, cxxopts, GoogleTest, zlib, PCRE2, gnuplot, clang-format,
#     the Fashion-MNIST data set;
#   - LibTorch from the pinned pip wheel torch==2.11.0 (CUDA 13.0 build) in a virtual
#     environment outside the checkout, keyed by the torch version, so reruns and CI reuse it;
#   - in that environment, scikit-build-core (the Python package's build backend) and pytest,
#     CUTLASS's headers (nvidia-cutlass, without its Python dependencies),
#     and the reference packages of the interoperability tests (transformers, safetensors,
#     tokenizers, gguf, accelerate);
#   - Fashion-MNIST decompressed into the cache (where torch::data::datasets::MNIST reads it).
# Prints nothing but progress; the environment's location is given by scripts/env.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "${here}/env.sh"

die() { echo "setup.sh: error: $*" >&2; exit 1; }

apt_packages=(build-essential cmake ninja-build pkg-config zlib1g-dev libgloo-dev libpcre2-dev
              libspdlog-dev libcxxopts-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
              gnuplot-nox dataset-fashion-mnist clang-format)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq || die "apt-get update failed"
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
fi

if [[ ! -f "${BITTORCH_VENV}/.complete" ]]; then
  command -v python3 >/dev/null || die "python3 is required to install the torch wheel"
  echo "setup.sh: installing torch==${BITTORCH_TORCH_VERSION} into ${BITTORCH_VENV} (one time, a few GB)"
  rm -rf "${BITTORCH_VENV}"
  mkdir -p "$(dirname "${BITTORCH_VENV}")"
  python3 -m venv "${BITTORCH_VENV}" || die "python3 -m venv failed (install python3-venv)"
  "${BITTORCH_VENV}/bin/python" -m pip install -q --no-cache-dir \
    "torch==${BITTORCH_TORCH_VERSION}" numpy || die "pip install torch==${BITTORCH_TORCH_VERSION} failed"
  "${BITTORCH_VENV}/bin/python" -c 'import torch; print("setup.sh: torch", torch.__version__)' \
    || die "the installed torch does not import"
  touch "${BITTORCH_VENV}/.complete"
fi
# The Python package's build backend and test runner (pinned), beside torch.
if ! "${BITTORCH_PYTHON}" -c 'import scikit_build_core, pytest' 2>/dev/null; then
  echo "setup.sh: installing scikit-build-core==${BITTORCH_SCIKIT_BUILD_CORE_VERSION} and pytest==${BITTORCH_PYTEST_VERSION}"
  "${BITTORCH_PYTHON}" -m pip install -q --no-cache-dir "scikit-build-core==${BITTORCH_SCIKIT_BUILD_CORE_VERSION}" \
    "pytest==${BITTORCH_PYTEST_VERSION}" || die "pip install scikit-build-core and pytest failed"
fi
# CUTLASS's C++ headers for the CUDA kernels built on it (pinned; the wheel's Python
# dependencies are not needed for the headers, so they are not installed).
if ! "${BITTORCH_PYTHON}" -c "from importlib.metadata import version; import sys
sys.exit(version('nvidia-cutlass') != '${BITTORCH_CUTLASS_VERSION}')" 2>/dev/null; then
  echo "setup.sh: installing nvidia-cutlass==${BITTORCH_CUTLASS_VERSION} (headers)"
  "${BITTORCH_PYTHON}" -m pip install -q --no-cache-dir --no-deps "nvidia-cutlass==${BITTORCH_CUTLASS_VERSION}" \
    || die "pip install nvidia-cutlass==${BITTORCH_CUTLASS_VERSION} failed"
fi
# The reference implementations of the interoperability tests (pinned): installed unless every
# one is there at its pinned version.
if ! "${BITTORCH_PYTHON}" - "${BITTORCH_REFERENCE_PACKAGES[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(name) != pinned for name, pinned in (p.split("==") for p in sys.argv[1:])))
PY
  echo "setup.sh: installing ${BITTORCH_REFERENCE_PACKAGES[*]}"
  "${BITTORCH_PYTHON}" -m pip install -q --no-cache-dir "${BITTORCH_REFERENCE_PACKAGES[@]}" \
    || die "pip install ${BITTORCH_REFERENCE_PACKAGES[*]} failed"
fi
# Fashion-MNIST as LibTorch's MNIST class reads it: the package's four gzipped IDX files,
# decompressed once (into a temporary directory, renamed whole).
fashion_source=/usr/share/datasets/fashion-mnist
fashion_dir="${BITTORCH_CACHE}/fashion-mnist"
if [[ -d "$fashion_source" && ! -d "$fashion_dir" ]]; then
  echo "setup.sh: decompressing Fashion-MNIST into ${fashion_dir}"
  mkdir -p "${BITTORCH_CACHE}"
  partial="$(mktemp -d "${BITTORCH_CACHE}/fashion-mnist.XXXXXX")"
  for file in "$fashion_source"/*-ubyte.gz; do
    gzip -dc "$file" >"${partial}/$(basename "${file%.gz}")" || die "cannot decompress ${file}"
  done
  chmod 755 "$partial"
  mv "$partial" "$fashion_dir"
fi
echo "setup.sh: ready (Torch at $(torch_cmake_prefix))"
