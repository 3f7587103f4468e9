#!/usr/bin/env python3
"""Per-kernel summary of an Nsight Compute CSV (`ncu --csv --page raw`): launches, mean
duration and DRAM bandwidth per kernel name and grid, the costliest first.

    python3 bench/ncu_kernel_summary.py ncu.csv [--json summary.json]

Reads the metrics gpu__time_duration.sum (ns) and, where profiled, dram__bytes.sum (bytes).
Lines before the CSV header (the application's own output, ncu's notes) are skipped."""

import argparse
import csv
import io
import json
import re
import sys
from collections import defaultdict


def read_rows(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{path}: no ncu CSV header (a line starting with \"ID\")")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
    # --page raw puts the units in the first row under the header.
    return [row for row in rows if row.get("ID", "").strip().isdigit()]


def short_name(name):
    """The kernel's function and its quantizer (or functor), without namespaces."""
    name = re.sub(r"bittorch::ops::cuda::|\(anonymous namespace\)::|c10::|at::native::", "", name)
    return name if len(name) <= 110 else name[:107] + "..."


def number(text):
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--json", help="write the summary here too")
    args = parser.parse_args()
    groups = defaultdict(list)
    for row in read_rows(args.csv):
        key = (short_name(row.get("Kernel Name", "?")), row.get("Grid Size", "?"), row.get("Block Size", "?"))
        groups[key].append((number(row.get("gpu__time_duration.sum")), number(row.get("dram__bytes.sum"))))
    summary = []
    for (name, grid, block), runs in groups.items():
        durations = [d for d, _ in runs]
        mean_ns = sum(durations) / len(durations)
        mean_bytes = sum(b for _, b in runs) / len(runs)
        summary.append({"kernel": name, "grid": grid, "block": block, "launches": len(runs),
                        "mean_us": mean_ns / 1e3, "total_us": sum(durations) / 1e3,
                        "dram_gb_per_s": mean_bytes / mean_ns if mean_ns > 0 else float("nan")})
    summary.sort(key=lambda s: -s["total_us"])
    for s in summary:
        print(f"{s['total_us']:9.1f} us {s['launches']:4d} x {s['mean_us']:7.1f} us  {s['dram_gb_per_s']:7.0f} GB/s  "
              f"grid {s['grid']:>14} block {s['block']:>10}  {s['kernel']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"source": args.csv, "kernels": summary}, f, indent=1)


if __name__ == "__main__":
    main()
