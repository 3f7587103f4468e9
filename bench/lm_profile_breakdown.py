"""Where a profiled training step spends the GPU's time, grouped as issue 26 asks: the kernels
of Chrome traces written by `bittorch-lm bench --profile DIR` and by
`bench/lm_pytorch_reference.py --profile DIR` (Kineto's format, the same from C++ and Python),
summed by kind (projections, attention, norms, rotary, activation, loss, optimizer, ...) and
by phase (forward, backward, optimizer), with the time the GPU sat idle between kernels.

    python3 bench/lm_profile_breakdown.py gpu-out/lm_profile_traces.tar.gz --json breakdown.json
    python3 bench/lm_profile_breakdown.py traces.tar.gz --top 20   # and each trace's 20 costliest kernels

A kernel's phase is where the host launched it (the runtime or driver call of the same
correlation id):
backward inside an autograd engine node (autograd::engine::evaluate_function), optimizer
inside an optimizer's step or when the kernel is an optimizer's, else forward. Kinds are read from the
kernel's name (our ops', ATen's, cuBLAS's and the compiler's Triton kernels), so the same
table reads for all traces. Not part of the library.
"""
import argparse
import bisect
import collections
import io
import json
import os
import re
import sys
import tarfile

# (kind, pattern on the kernel's name), first match wins. Triton kernels (torch.compile) carry
# the ops they fuse in their names.
KINDS = [
    ("communication", r"^nccl|gloo"),
    ("optimizer", r"adam|fused_adamw|multi_tensor_apply_kernel.*(Adam|adam)"),
    ("gradient clipping", r"foreach_tensor_norm|multi_tensor_apply.*(Norm|norm)|lpnorm|foreach.*mul"),
    ("attention", r"flash|fmha|attention|sdpa|softmax_warp"),
    ("loss", r"cross_entropy|log_softmax|nll_loss|classifier"),
    ("projections (GEMM)", r"gemm|nvjet|cutlass|xmma|cublas|splitKreduce|sm90_|sm80_|_mma_"),
    ("quantization", r"ternar|quantize|absmean|absmax"),
    ("norms", r"rms_norm|rmsnorm|layer_norm|rsqrt"),
    ("rotary", r"rotary|\bcos\b|_cos_|_sin_"),
    ("activation", r"squared_relu|relu|pow_"),
    ("embedding", r"embedding|index_select|indexSelect|gather|scatter"),
    ("casts and copies", r"copy|_to_copy|cast|CatArrayBatched|cat_|memcpy|Memcpy"),
    ("memset and fill", r"memset|Memset|fill|FillFunctor|zero"),
    ("reductions", r"reduce_kernel|reduce|sum_|mean_|amax"),
    ("compiler-fused, other", r"^triton_"),
    ("elementwise, other", r"elementwise|Functor|unrolled"),
]
KIND_PATTERNS = [(kind, re.compile(pattern)) for kind, pattern in KINDS]
DEVICE_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
BACKWARD_OP = "autograd::engine::evaluate_function"
OPTIMIZER_OP = re.compile(r"Optimizer\.step|optimizer|_fused_adamw|FusedAdamW|AdamW")


def kind_of(name):
    for kind, pattern in KIND_PATTERNS:
        if pattern.search(name):
            return kind
    return "other"


def read_traces(path):
    """{trace name: parsed JSON} from a .tar.gz of traces, a folder of them, or one trace."""
    traces = {}
    if os.path.isdir(path):
        for folder, _, files in os.walk(path):
            for name in sorted(files):
                if name.endswith(".json"):
                    with open(os.path.join(folder, name)) as f:
                        traces[os.path.relpath(os.path.join(folder, name), path)] = json.load(f)
    elif path.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.endswith(".json"):
                    traces[member.name] = json.load(io.TextIOWrapper(archive.extractfile(member)))
    else:
        with open(path) as f:
            traces[os.path.basename(path)] = json.load(f)
    if not traces:
        sys.exit(f"lm_profile_breakdown.py: no trace (.json) in {path}")
    return traces


class Enclosing:
    """Whether a host time lies inside one of the given host spans, per thread."""

    def __init__(self, spans):
        self.by_thread = collections.defaultdict(list)
        for thread, start, end in spans:
            self.by_thread[thread].append((start, end))
        for thread in self.by_thread:
            merged = []
            for start, end in sorted(self.by_thread[thread]):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self.by_thread[thread] = merged

    def contains(self, thread, time):
        spans = self.by_thread.get(thread, [])
        i = bisect.bisect_right(spans, [time, float("inf")]) - 1
        return i >= 0 and spans[i][0] <= time <= spans[i][1]


def breakdown(trace):
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    host = [e for e in events if e.get("cat") in ("cpu_op", "user_annotation", "python_function")]
    device = [e for e in events if e.get("cat") in DEVICE_CATEGORIES]
    if not device:
        return None
    backward = Enclosing((e["tid"], e["ts"], e["ts"] + e["dur"]) for e in host if e["name"].startswith(BACKWARD_OP))
    optimizer = Enclosing((e["tid"], e["ts"], e["ts"] + e["dur"]) for e in host if OPTIMIZER_OP.search(e["name"]))
    # Where each kernel was launched: the host thread and time of its runtime or driver call
    # (cudaLaunchKernel, or cuLaunchKernelEx as cuBLAS's kernels are, of the same correlation
    # id), inside the ops that issued it.
    launches = {e["args"]["correlation"]: e for e in events
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    table = collections.defaultdict(lambda: {"ms": 0.0, "kernels": 0})
    by_name = collections.defaultdict(lambda: {"ms": 0.0, "kernels": 0})
    phases = collections.defaultdict(float)
    for e in device:
        kind = kind_of(e["name"]) if e.get("cat") == "kernel" else (
            "casts and copies" if e.get("cat") == "gpu_memcpy" else "memset and fill")
        launch = launches.get(e.get("args", {}).get("correlation"))
        phase = "forward"
        if kind == "optimizer" or (launch is not None and optimizer.contains(launch["tid"], launch["ts"])):
            phase = "optimizer"
        elif launch is not None and backward.contains(launch["tid"], launch["ts"]):
            phase = "backward"
        for entry in (table[(phase, kind)], by_name[(kind, e["name"])]):
            entry["ms"] += e["dur"] / 1e3
            entry["kernels"] += 1
        phases[phase] += e["dur"] / 1e3
    # Idle: the span from the first kernel's start to the last one's end less the union of
    # the kernels' intervals.
    intervals = sorted((e["ts"], e["ts"] + e["dur"]) for e in device)
    busy, end = 0.0, intervals[0][0]
    for start, stop in intervals:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    span = (max(stop for _, stop in intervals) - intervals[0][0]) / 1e3
    rows = [{"phase": phase, "kind": kind, "ms": round(v["ms"], 3), "kernels": v["kernels"]}
            for (phase, kind), v in sorted(table.items(), key=lambda item: -item[1]["ms"])]
    top = [{"kind": kind, "name": name, "ms": round(v["ms"], 3), "kernels": v["kernels"]}
           for (kind, name), v in sorted(by_name.items(), key=lambda item: -item[1]["ms"])]
    return {"span_ms": round(span, 3), "busy_ms": round(busy / 1e3, 3), "idle_ms": round(span - busy / 1e3, 3),
            "kernels": len(device), "phases_ms": {k: round(v, 3) for k, v in phases.items()}, "rows": rows,
            "by_kernel": top}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", help="a .tar.gz of Chrome traces, a folder of them, or one trace (.json)")
    parser.add_argument("--json", help="write the breakdowns here")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="also print each trace's N kernels of the most time (all of them go to --json)")
    args = parser.parse_args()
    if args.top < 0:
        sys.exit(f"lm_profile_breakdown.py: --top must be >= 0, not {args.top}")
    if not os.path.exists(args.traces):
        sys.exit(f"lm_profile_breakdown.py: {args.traces}: no such file or folder")
    results = {}
    for name, trace in sorted(read_traces(args.traces).items()):
        result = breakdown(trace)
        if result is None:
            print(f"{name}: no GPU kernels (a CPU trace?), skipped")
            continue
        results[name] = result
        print(f"\n{name}: {result['kernels']} kernels over {result['span_ms']:.1f} ms, GPU busy {result['busy_ms']:.1f} "
              f"ms, idle {result['idle_ms']:.1f} ms; " +
              ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(result["phases_ms"].items())))
        for row in result["rows"]:
            print(f"  {row['phase']:<9} {row['kind']:<24} {row['ms']:9.2f} ms  {row['kernels']:6d} kernels")
        if args.top:
            print(f"  the {min(args.top, len(result['by_kernel']))} costliest kernels (us per launch):")
        for row in result["by_kernel"][:args.top]:
            print(f"  {row['ms']:9.2f} ms {row['kernels']:6d} x {1e3 * row['ms'] / row['kernels']:8.1f} us  "
                  f"{row['kind']:<20.20} {row['name'][:100]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
