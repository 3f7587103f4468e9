#!/usr/bin/env python3
"""Renders a bittorch-bench JSON file as a markdown table for docs/results.md.

Usage: scripts/bench_table.py bench/results/h100-2026-11-26.json
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    rows = {}
    for r in doc["results"]:
        key = (f'{r["in_features"]}x{r["out_features"]}', r["rows"])
        rows.setdefault(key, {})[r["variant"]] = r
    print(f'{doc["gpu"]}, CUDA driver API {doc["cuda_driver_version"]}, torch {doc["torch"]}, '
          f'commit {doc["commit"][:7]}; {doc["method"]}.\n')
    print("| in x out | M | BF16 autocast fwd / step (ms) | pure BF16 fwd / step | "
          "ternary fwd / step | **ternary ratio** | ternary_a8 fwd / step | **ternary_a8 ratio** |")
    print("|---|---|---|---|---|---|---|---|")
    for (shape, m), variants in rows.items():
        cells = [shape, str(m)]
        for name in ("bf16_autocast", "bf16", "ternary", "ternary_a8"):
            v = variants.get(name)
            if v is None:
                cells.append("-")
                if name.startswith("ternary"):
                    cells.append("-")
                continue
            cells.append(f'{v["forward_ms"]:.3f} / {v["train_step_ms"]:.3f}')
            if name.startswith("ternary"):
                cells.append(f'**{v["forward_ratio_to_bf16_autocast"]:.2f} / '
                             f'{v["train_step_ratio_to_bf16_autocast"]:.2f}**')
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
