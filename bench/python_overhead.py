#!/usr/bin/env python3
"""What the Python module adds over calling the op directly: bittorch.nn.TernaryLinear(x)
against torch.ops.bittorch.ternary_linear(x, weight, bias, ...) on the same tensors, forward
only (no grad) and forward + backward, at a few batch sizes.

Method: CUDA events (or the wall clock on the CPU) around `--calls` calls in a row after a
warm-up, median of `--repeats` such runs; the ratio is module time / op time.

usage: python bench/python_overhead.py [--device cuda] [--rows 1,4096] [--json PATH]
(needs the package importable: pip install it, or PYTHONPATH=python and BITTORCH_LIBRARY)."""
import argparse
import json
import statistics
import sys
import time

import torch

import bittorch
from bittorch.nn import TernaryLinear


def timed(device, calls, repeats, fn):
    """Median microseconds per call."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1000 / calls)
        else:
            begin = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - begin) * 1e6 / calls)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", default="1,4096", help="batch sizes (comma-separated)")
    parser.add_argument("--features", type=int, default=4096, help="in and out features (default 4096)")
    parser.add_argument("--calls", type=int, default=50, help="calls per timed run (default 50)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs, median (default 20)")
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU on this machine")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    layer = TernaryLinear(args.features, args.features).to(device, dtype)
    results = []
    print(f"{'rows':>6} {'pass':<16} {'op us':>10} {'module us':>10} {'module/op':>10}")
    for rows in [int(r) for r in args.rows.split(",")]:
        x = torch.randn(rows, args.features, device=device, dtype=dtype, requires_grad=True)

        def op():
            return torch.ops.bittorch.ternary_linear(x, layer.weight, layer.bias, 0.05, True, "max", "none")

        for name, grad in (("forward", False), ("forward+backward", True)):
            def run(fn):
                if not grad:
                    with torch.no_grad():
                        return fn()
                out = fn()
                out.backward(torch.ones_like(out))
                return out

            op_us = timed(device, args.calls, args.repeats, lambda: run(op))
            module_us = timed(device, args.calls, args.repeats, lambda: run(lambda: layer(x)))
            results.append({"rows": rows, "pass": name, "op_us": op_us, "module_us": module_us,
                            "ratio": module_us / op_us})
            print(f"{rows:>6} {name:<16} {op_us:>10.1f} {module_us:>10.1f} {module_us / op_us:>10.3f}", flush=True)
    if args.json:
        meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "torch": torch.__version__, "features": args.features, "dtype": str(dtype),
                "library": str(bittorch.library_path()), "method": "median of repeats of back-to-back calls"}
        with open(args.json, "w") as file:
            json.dump({**meta, "results": results}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
