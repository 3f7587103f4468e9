#!/usr/bin/env bash
# The main job: set-up, build, then FP32 versus ternary on the embedded MNIST
# (extra arguments go to bittorch-mnist, e.g. --cuda or --dataset fashion-mnist).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${root}/scripts/build.sh" release
"${root}/build/apps/mnist/bittorch-mnist" --compare "$@"
