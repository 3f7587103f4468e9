#!/usr/bin/env bash
# Turns the JSON of `bittorch-mnist --metrics-json` into a PNG of the learning curves
# (test accuracy and train loss per epoch, one line per model), with gnuplot.
# Usage: scripts/plot_metrics.sh METRICS.json OUT.png
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "Usage: $0 METRICS.json OUT.png" >&2
  exit 2
fi
metrics="$1"
out="$2"
command -v gnuplot >/dev/null || { echo "plot_metrics.sh: gnuplot is required (scripts/setup.sh installs it)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "plot_metrics.sh: python3 is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One whitespace-separated table per model: epoch, train loss, test accuracy.
python3 - "$metrics" "$work" <<'PY'
import json, sys
metrics, work = sys.argv[1], sys.argv[2]
with open(metrics) as f:
    doc = json.load(f)
with open(f"{work}/title", "w") as f:
    f.write(f"{doc['dataset']} on {doc['device']}")
with open(f"{work}/models", "w") as f:
    for run in doc["runs"]:
        f.write(run["model"] + "\n")
        with open(f"{work}/{run['model']}.dat", "w") as d:
            for e in run["epochs"]:
                d.write(f"{e['epoch']} {e['train_loss']} {e['test_accuracy']}\n")
PY
models=$(cat "$work/models")
acc_plot="" loss_plot=""
for m in $models; do
  acc_plot+="${acc_plot:+, }'$work/$m.dat' using 1:3 with linespoints title '$m'"
  loss_plot+="${loss_plot:+, }'$work/$m.dat' using 1:2 with linespoints title '$m'"
done
gnuplot <<GP
set terminal pngcairo size 1100,450 noenhanced
set output '$out'
set multiplot layout 1,2 title '$(cat "$work/title")'
set xlabel 'epoch'
set grid
set key bottom right
set ylabel 'test accuracy (%)'
plot $acc_plot
set key top right
set ylabel 'train loss'
plot $loss_plot
unset multiplot
GP
echo "wrote $out"
