#!/usr/bin/env bash
# Turns the JSON of `bittorch-mnist --metrics-json` or `bittorch-lm train --metrics-json` into a
# PNG of the learning curves, one line per model, with gnuplot: for bittorch-mnist test
# accuracy and train loss per epoch; for bittorch-lm validation loss against training tokens
# and the training loss of every step.
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
# bittorch-lm's: validation loss per evaluation against tokens ($m.dat), and each step's
# training loss ($m.steps).
python3 - "$metrics" "$work" <<'PY'
import json, sys
metrics, work = sys.argv[1], sys.argv[2]
try:
    with open(metrics) as f:
        doc = json.load(f)
except (OSError, ValueError) as error:
    sys.exit(f"plot_metrics.sh: {metrics}: {error}")
language_model = "tokens_per_step" in doc
with open(f"{work}/kind", "w") as f:
    f.write("lm" if language_model else "mnist")
with open(f"{work}/title", "w") as f:
    f.write(f"{doc['train_file']} on {doc['device']}" if language_model else f"{doc['dataset']} on {doc['device']}")
with open(f"{work}/models", "w") as f:
    for run in doc["runs"]:
        f.write(run["model"] + "\n")
        with open(f"{work}/{run['model']}.dat", "w") as d:
            if language_model:
                for e in run["evaluations"]:
                    d.write(f"{e['steps'] * doc['tokens_per_step']} {e['val_loss']}\n")
            else:
                for e in run["epochs"]:
                    d.write(f"{e['epoch']} {e['train_loss']} {e['test_accuracy']}\n")
        if language_model:
            with open(f"{work}/{run['model']}.steps", "w") as d:
                for e in run["evaluations"]:
                    losses = e.get("step_losses", [])
                    for i, loss in enumerate(losses):
                        d.write(f"{e['steps'] - len(losses) + i + 1} {loss}\n")
PY
models=$(cat "$work/models")
# Two panels side by side: $1 and $2 are each panel's gnuplot commands.
two_panels() {
  gnuplot <<GP
set terminal pngcairo size 1100,450 noenhanced
set output '$out'
set multiplot layout 1,2 title '$(cat "$work/title")'
set grid
$1
$2
unset multiplot
GP
  echo "wrote $out"
}
left="" right=""
if [[ "$(cat "$work/kind")" == lm ]]; then
  for m in $models; do
    left+="${left:+, }'$work/$m.dat' using 1:2 with linespoints title '$m'"
    right+="${right:+, }'$work/$m.steps' using 1:2 with lines title '$m'"
  done
  two_panels "set key top right; set xlabel 'training tokens'; set ylabel 'validation loss (nats per byte)'; plot $left" \
             "set xlabel 'step'; set ylabel 'training loss'; plot $right"
else
  for m in $models; do
    left+="${left:+, }'$work/$m.dat' using 1:3 with linespoints title '$m'"
    right+="${right:+, }'$work/$m.dat' using 1:2 with linespoints title '$m'"
  done
  two_panels "set xlabel 'epoch'; set key bottom right; set ylabel 'test accuracy (%)'; plot $left" \
             "set key top right; set ylabel 'train loss'; plot $right"
fi
