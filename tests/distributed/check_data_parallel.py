"""Data parallelism on the CPU with Gloo, two processes launched by torchrun (the venv's
torch.distributed.run): the trained parameters equal one process's on the same global
batches; bucketed/overlapped equals a plain per-parameter all-reduce; bfloat16 gradients stay
close; gradient accumulation with no_sync equals one process; AdamW state sharded over the
ranks (ZeRO stage 1) and gradients too (stage 2, each rank then holding its own parameters'
gradients alone) equal one process with AdamW; so do two single-process
"nodes" meeting at torchrun's c10d rendezvous, as on two machines; a rank that dies and a
rendezvous that never completes end the job with an error, not a hang.

Usage: check_data_parallel.py PYTHON WORKER WORKDIR [cuda]: with "cuda", every process on its
GPU and NCCL between them (a dead rank then ends the other through NCCL's watchdog, after
the timeout)."""
import os
import socket
import subprocess
import sys
import time

python, worker, workdir = sys.argv[1:4]
device = ["--device", "cuda"] if sys.argv[4:] == ["cuda"] else []
os.makedirs(workdir, exist_ok=True)
failures = 0
outputs = {}  # each run's standard output


def clean_env():
    env = dict(os.environ)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(args, launch, timeout=300, extra_env=None):
    command = ([python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
               if launch else []) + [worker] + device + args
    start = time.monotonic()
    env = clean_env()
    env.update(extra_env or {})
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


def trained(name, args, launch, extra_env=None):
    output = os.path.join(workdir, name + ".txt")
    if os.path.exists(output):
        os.remove(output)
    result, _ = run(args + ["--output", output], launch, extra_env=extra_env)
    if result.returncode != 0:
        raise SystemExit(f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    outputs[name] = result.stdout
    for line in result.stdout.splitlines():
        if line.startswith("ranks differ by") and float(line.split()[-1]) != 0:
            print(f"  {name}: {line} (they must not)", flush=True)
            global failures
            failures += 1
    with open(output) as f:
        return [float(line) for line in f]


# The worker's parameters in order (hidden.weight 32x16, hidden.bias, out.weight 4x32, out.bias),
# to say which of them a mismatch is in.
PARAMETERS = (("hidden.weight", 512), ("hidden.bias", 32), ("out.weight", 128), ("out.bias", 4))


def per_parameter_differences(got, want):
    parts, start = [], 0
    for name, size in PARAMETERS:
        error = max(abs(a - b) for a, b in zip(got[start:start + size], want[start:start + size]))
        parts.append(f"{name} {error:.3g}")
        start += size
    return ", ".join(parts)


def check(name, got, want, tolerance):
    global failures
    error = max(abs(a - b) for a, b in zip(got, want)) if len(got) == len(want) else float("inf")
    ok = error <= tolerance
    print(f"{name}: max difference {error:.3g} (tolerance {tolerance:g}) {'ok' if ok else 'MISMATCH'}", flush=True)
    if not ok and len(got) == len(want):
        print(f"  by parameter: {per_parameter_differences(got, want)}", flush=True)
    failures += not ok


reference = trained("reference", ["--mode", "reference"], launch=False)
# A bucket cap of 64 bytes puts every parameter in a bucket of its own: several buckets in flight.
bucketed = trained("bucketed", ["--mode", "bucketed", "--bucket-mb", "0.00006"], launch=True)
one_bucket = trained("one_bucket", ["--mode", "bucketed"], launch=True)
per_parameter = trained("per_parameter", ["--mode", "per_parameter"], launch=True)
bf16 = trained("bf16", ["--mode", "bf16"], launch=True)
check("2 ranks, buckets of one parameter == 1 process", bucketed, reference, 1e-5)
check("2 ranks, one bucket == 1 process", one_bucket, reference, 1e-5)
check("2 ranks, per-parameter all-reduce == 1 process", per_parameter, reference, 1e-5)
check("bucketed == per-parameter", bucketed, per_parameter, 1e-6)
check("2 ranks, bfloat16 gradients ~ 1 process", bf16, reference, 2e-2)
if device:
    # A rank that leaves with NCCL collectives still queued corrupts the others' last sums only
    # now and then (finish_process_group is there for it): the CUDA runs are repeated.
    for repeat in range(3):
        check(f"repeat {repeat + 1}, buckets of one parameter == 1 process",
              trained("bucketed", ["--mode", "bucketed", "--bucket-mb", "0.00006"], launch=True), reference, 1e-5)
        check(f"repeat {repeat + 1}, per-parameter all-reduce == 1 process",
              trained("per_parameter", ["--mode", "per_parameter"], launch=True), reference, 1e-5)
accumulated_reference = trained("accumulated_reference", ["--mode", "reference", "--micro-batches", "2"], launch=False)
accumulated = trained("accumulated", ["--mode", "bucketed", "--micro-batches", "2"], launch=True)
check("2 ranks, 2 micro-batches with no_sync == 1 process", accumulated, accumulated_reference, 1e-5)


def gradient_elements_held(name):
    """Each rank's "rank R holds H of N gradient elements" line: {rank: (H, N)}."""
    held = {}
    for line in outputs[name].splitlines():
        words = line.split()
        if len(words) == 8 and words[0] == "rank" and words[2] == "holds":
            held[int(words[1])] = (int(words[3]), int(words[5]))
    return held


def check_held(name, sharded):
    global failures
    held = gradient_elements_held(name)
    total = sum(size for _, size in PARAMETERS)
    if sharded:  # every gradient on exactly one rank, none on both
        ok = len(held) == 2 and sum(h for h, _ in held.values()) == total and all(h < total for h, _ in held.values())
    else:
        ok = len(held) == 2 and all(h == total for h, _ in held.values())
    print(f"{name}: gradient elements held per rank {held} {'ok' if ok else 'MISMATCH'}", flush=True)
    failures += not ok


# ZeRO with AdamW: stage 1 (--shard optimizer) and stage 2 (--shard gradients), with several
# reduces in flight (64-byte limit) and all of them (the default), against one process.
adamw = ["--optimizer", "adamw"]
adamw_reference = trained("adamw_reference", ["--mode", "reference", *adamw], launch=False)
for shard, limit in (("optimizer", "25"), ("gradients", "0.00006"), ("gradients", "25")):
    name = f"shard_{shard}_{limit}"
    got = trained(name, ["--mode", "bucketed", *adamw, "--shard", shard, "--bucket-mb", limit], launch=True)
    check(f"2 ranks, AdamW, sharded {shard} (bucket-mb {limit}) == 1 process", got, adamw_reference, 1e-5)
    check_held(name, sharded=shard == "gradients")
accumulated_adamw = trained("accumulated_adamw_reference", ["--mode", "reference", *adamw, "--micro-batches", "2"],
                            launch=False)
check("2 ranks, AdamW, sharded gradients, 2 micro-batches == 1 process",
      trained("shard_gradients_accumulated", ["--mode", "bucketed", *adamw, "--shard", "gradients", "--micro-batches",
                                              "2"], launch=True), accumulated_adamw, 1e-5)
# bfloat16 gradients round the same way reduced to an owner as all-reduced.
check("2 ranks, AdamW, bfloat16 gradients: sharded == all-reduced",
      trained("bf16_shard_gradients", ["--mode", "bf16", *adamw, "--shard", "gradients"], launch=True),
      trained("bf16_adamw", ["--mode", "bf16", *adamw], launch=True), 1e-6)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Two machines of one process each, as torchrun starts them there: one agent per node meeting
# at a c10d rendezvous (RANK and LOCAL_RANK differ on one of them; the first agent hosts the
# store the other node's worker joins). CPU only: on one host both would take GPU 0.
if not device:
    output = os.path.join(workdir, "two_nodes.txt")
    if os.path.exists(output):
        os.remove(output)
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([python, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                               "--rdzv-id", "two_nodes", "--no-python", worker, "--mode", "bucketed",
                               "--output", output], env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for node in (0, 1)]
    errors = [node.communicate(timeout=300)[1] for node in nodes]
    if any(node.returncode != 0 for node in nodes):
        print("two nodes: exit " + ", ".join(str(node.returncode) for node in nodes) + "\n" + "\n".join(errors))
        failures += 1
    else:
        with open(output) as f:
            check("2 nodes of 1 process (torchrun --nnodes 2) == 1 process", [float(line) for line in f], reference, 1e-5)


# A rank that dies: the other one must fail (its peer's connection closes), not wait for ever,
# with an error naming the rank that died (from the heartbeats; Gloo itself says only
# "Connection reset by peer"). Rank 0 hosts the store: when it dies, the survivor says so.
# Both started here, not by torchrun, whose agent would stop the survivor itself.
for dying, expected in ((1, "rank 1 ended"), (0, "rank 0, which hosts it, ended")):
    port = free_port()
    ranks = []
    start = time.monotonic()
    for rank in (0, 1):
        env = clean_env()
        env.update(WORLD_SIZE="2", RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        ranks.append(subprocess.Popen([worker, *device, "--mode", "bucketed", "--steps", "1000", "--die-at-step", "3",
                                       "--dying-rank", str(dying), "--timeout-ms", "20000"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    survivor = ranks[1 - dying]
    survivor_err = survivor.communicate(timeout=200)[1]
    ranks[dying].communicate(timeout=200)
    seconds = time.monotonic() - start
    # NCCL's watchdog aborts the survivor without an error of ours: only the exit is checked there.
    named = bool(device) or expected in survivor_err
    ok = survivor.returncode not in (0, None) and ranks[dying].returncode == 9 and seconds < 120 and named
    print(f"rank {dying} dies at step 3: the other exits {survivor.returncode} after {seconds:.1f} s, "
          f"\"{survivor_err.strip()[:300]}\" {'ok' if ok else 'MISMATCH'}", flush=True)
    failures += not ok

# A rendezvous that never completes: rank 0 of 2 alone, a 2-second timeout.
port = free_port()
env = clean_env()
env.update(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
start = time.monotonic()
lonely = subprocess.run([worker, *device, "--mode", "bucketed", "--timeout-ms", "2000"], env=env, capture_output=True,
                        text=True, timeout=120)
seconds = time.monotonic() - start
ok = lonely.returncode != 0 and "rendezvous" in lonely.stderr and seconds < 60
print(f"a rendezvous missing a rank: exit {lonely.returncode} after {seconds:.1f} s, "
      f"\"{lonely.stderr.strip()[:160]}\" {'ok' if ok else 'MISMATCH'}", flush=True)
failures += not ok

env.update(WORLD_SIZE="2", RANK="two")
bad = subprocess.run([worker], env=env, capture_output=True, text=True, timeout=60)
ok = bad.returncode != 0 and "RANK='two'" in bad.stderr
print(f"a malformed RANK: \"{bad.stderr.strip()[:120]}\" {'ok' if ok else 'MISMATCH'}", flush=True)
failures += not ok

print(f"{'passed' if failures == 0 else 'FAILED'}: {failures} mismatches")
sys.exit(1 if failures else 0)
