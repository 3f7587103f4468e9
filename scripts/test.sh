#!/usr/bin/env bash
# The whole test suite: set-up, build, then CTest (unit tests, the installed-package
# consumer, the Python test, the apps' tests). CUDA tests skip with a message without a GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${root}/scripts/build.sh" release
cd "${root}"
ctest --preset release -j"${BITTORCH_JOBS:-$(nproc)}" "$@"
