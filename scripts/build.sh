#!/usr/bin/env bash
# Set-up (idempotent), then configure and build with the CMake preset given (default: release).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
preset="${1:-release}"
source "${root}/scripts/env.sh"
bash "${root}/scripts/setup.sh"
cd "${root}"
cmake --preset "${preset}" -DBITTORCH_PYTHON="${BITTORCH_PYTHON}" >/dev/null
cmake --build --preset "${preset}" -- -j"${BITTORCH_JOBS:-$(nproc)}"
