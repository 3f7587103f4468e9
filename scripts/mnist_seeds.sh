#!/usr/bin/env bash
# Runs `bittorch-mnist --compare` over several seeds and prints the mean and spread of each
# model's final test accuracy: the figures docs/results.md reports.
# Usage: scripts/mnist_seeds.sh [SEEDS] [-- extra bittorch-mnist flags]
#   e.g. scripts/mnist_seeds.sh "42 1 2 3 4" -- --dataset fashion-mnist
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="${1:-42 1 2 3 4}"
shift || true
[[ "${1:-}" == "--" ]] && shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for seed in $seeds; do
  echo "seed $seed..." >&2
  "${root}/build/apps/mnist/bittorch-mnist" --compare --seed "$seed" --no-progress --log-level warn \
    --metrics-json "$work/seed-$seed.json" "$@" >/dev/null
done
python3 - "$work" <<'PY'
import glob, json, statistics, sys
runs = {}
for path in sorted(glob.glob(f"{sys.argv[1]}/seed-*.json")):
    doc = json.load(open(path))
    for run in doc["runs"]:
        runs.setdefault(run["model"], []).append(
            (run["seed"], run["final_test_accuracy"], run["mean_epoch_seconds"]))
print(f"dataset {doc['dataset']}, device {doc['device']}, seeds {' '.join(str(s) for s, _, _ in runs['fp32'])}")
print(f"{'model':<8} {'mean acc':>9} {'std':>6} {'min':>7} {'max':>7}  per seed")
for model, results in runs.items():
    acc = [a for _, a, _ in results]
    print(f"{model:<8} {statistics.mean(acc):>8.2f}% {statistics.pstdev(acc):>6.2f} {min(acc):>6.2f}% "
          f"{max(acc):>6.2f}%  {' '.join(f'{a:.2f}' for a in acc)}")
PY
