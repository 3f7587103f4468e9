#!/usr/bin/env bash
# The main job: set-up, build, then the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${root}/scripts/build.sh" release
"${root}/build/apps/xor/bittorch-xor" --compare "$@"
