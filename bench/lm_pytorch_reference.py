"""The language model of `bittorch-lm` written in plain PyTorch, trained eagerly and under
torch.compile: the reference that bittorch-lm's training throughput is compared with (issue 26).
Not part of the library.

The same architecture (token embedding; blocks of RMSNorm -> causal self-attention with q, k,
v, o projections, rotary embeddings rotating the two halves of each head, and
scaled_dot_product_attention -> RMSNorm -> squared-ReLU MLP, each with a residual; final
RMSNorm and head; no biases), the same step (one fixed batch of random bytes, BF16 autocast on a
GPU, cross-entropy in float32, gradient norm clipped to 1, AdamW with betas 0.9 and 0.95, decay
0.1 on the matrices only, PyTorch's fused kernel) and the same sizes (read from a
`bittorch-lm bench --json` file, or from the flags). Variants, named as bittorch-lm bench's:
"baseline" (plain linear layers; BF16 autocast on a GPU, float32 on the CPU) and "bitnet"
(BitNet b1.58 fake quantization in every projection but the head: weights
round(w / mean|w|) clipped to [-1, 1] times mean|w| per output row, inputs per-token absmax
8-bit, both through a straight-through estimator: bittorch-lm's "ternary_a8").

    python3 bench/lm_pytorch_reference.py --from-bench gpu-out/lm_bench_medium.json \
        --json gpu-out/lm_pytorch_medium.json

prints and writes, for each mode (eager, compile) and variant: tokens/s over the timed steps
(after warm-up steps, which include compilation) and the peak GPU memory of a step; with
--profile DIR, three more steps under torch.profiler (a Chrome trace each, and the ops' times).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {  # layers, width, heads, context: nn::transformer_preset
    "tiny": (2, 64, 2, 64),
    "small": (6, 384, 6, 256),
    "medium": (12, 768, 12, 512),
    "large": (24, 1536, 12, 1024),
}


def ste(x, quantized):
    """quantized in the forward, the identity's gradient in the backward."""
    return x + (quantized - x).detach()


class Linear(torch.nn.Linear):
    """A projection without bias; with `bitnet`, BitNet b1.58's fake quantization."""

    def __init__(self, features_in, features_out, bitnet):
        super().__init__(features_in, features_out, bias=False)
        self.bitnet = bitnet

    def forward(self, x):
        if not self.bitnet:
            return F.linear(x, self.weight)
        w = self.weight
        scale = w.abs().mean(dim=1, keepdim=True).clamp_min(1e-8)
        w_q = ste(w, (w / scale).round().clamp(-1, 1) * scale)
        x_scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127
        x_q = ste(x, (x / x_scale).round().clamp(-128, 127) * x_scale)
        return F.linear(x_q, w_q.to(x_q.dtype))


class Block(torch.nn.Module):
    def __init__(self, width, heads, mlp_ratio, eps, bitnet):
        super().__init__()
        self.heads = heads
        self.attention_norm = torch.nn.RMSNorm(width, eps=eps)
        self.q, self.k, self.v, self.o = (Linear(width, width, bitnet) for _ in range(4))
        self.mlp_norm = torch.nn.RMSNorm(width, eps=eps)
        self.up = Linear(width, mlp_ratio * width, bitnet)
        self.down = Linear(mlp_ratio * width, width, bitnet)

    def forward(self, x, cos, signed_sin):
        batch, steps, width = x.shape
        h = self.attention_norm(x)

        def heads_of(t):
            return t.view(batch, steps, self.heads, width // self.heads).transpose(1, 2)

        def rotate(t):  # x * cos + roll(x, half) * signed_sin, as nn::functional::apply_rotary
            return t * cos.to(t.dtype) + t.roll(t.shape[-1] // 2, -1) * signed_sin.to(t.dtype)

        q, k, v = rotate(heads_of(self.q(h))), rotate(heads_of(self.k(h))), heads_of(self.v(h))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(batch, steps, width))
        return x + self.down(F.relu(self.up(self.mlp_norm(x))).square())


class TransformerLM(torch.nn.Module):
    def __init__(self, vocab, layers, width, heads, context, mlp_ratio, rope_base, eps, bitnet):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads, mlp_ratio, eps, bitnet) for _ in range(layers))
        self.norm = torch.nn.RMSNorm(width, eps=eps)
        self.head = torch.nn.Linear(width, vocab, bias=False)
        head_size = width // heads
        inverse_frequency = rope_base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
        angles = torch.outer(torch.arange(context, dtype=torch.float64), inverse_frequency)
        self.register_buffer("cos", torch.cat([angles.cos(), angles.cos()], 1).float(), persistent=False)
        self.register_buffer("signed_sin", torch.cat([-angles.sin(), angles.sin()], 1).float(), persistent=False)
        for name, p in self.named_parameters():  # GPT-2's initialisation, as TransformerLM's
            if p.dim() == 2:
                residual = name.endswith((".o.weight", ".down.weight"))
                torch.nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers) if residual else 0.02)

    def forward(self, tokens):
        steps = tokens.shape[1]
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x, self.cos[:steps], self.signed_sin[:steps])
        return self.head(self.norm(x))


def make_optimizer(model, lr, weight_decay, fused):
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


def run(config, variant, mode, args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = TransformerLM(config["vocab_size"], config["layers"], config["width"], config["heads"], config["context"],
                          config["mlp_ratio"], config["rope_base"], config["norm_eps"], variant == "bitnet").to(device)
    optimizer = make_optimizer(model, 1e-4, 0.1, fused=True)
    batch, context = config["batch_size"], config["context"]
    data = torch.randint(0, config["vocab_size"], (batch, context + 1), device=device)
    inputs, targets = data[:, :-1], data[:, 1:]
    bf16 = device.type == "cuda"

    def loss_of(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    loss_fn = torch.compile(loss_of) if mode == "compile" else loss_of

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        return loss

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.monotonic()
    for _ in range(args.warmup):
        step()
    synchronize()
    warmup_seconds = time.monotonic() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.monotonic()
    for _ in range(args.steps):
        loss = step()
    synchronize()
    seconds = time.monotonic() - start
    result = {}
    if args.profile:
        result["profile"] = profile(step, synchronize, device, f"{args.profile}/{mode}_{variant}.trace.json")
    result.update({
        "mode": mode,
        "variant": variant,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_second": batch * context * args.steps / seconds,
        "step_ms": 1e3 * seconds / args.steps,
        "warmup_seconds": warmup_seconds,
        "final_loss": float(loss.detach()),
    })
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def profile(step, synchronize, device, trace_path, steps=3):
    """`steps` more steps under torch.profiler: a Chrome trace, and the ops' totals (self GPU
    time and host time, by name) as torch.profiler's own table sums them."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    start = time.monotonic()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize()
    wall_ms = 1e3 * (time.monotonic() - start)
    prof.export_chrome_trace(trace_path)
    rows = sorted(prof.key_averages(), key=lambda e: (e.self_device_time_total, e.cpu_time_total), reverse=True)
    ops = [{"name": e.key, "calls": e.count, "host_ms": e.cpu_time_total / 1e3,
            "device_self_ms": e.self_device_time_total / 1e3} for e in rows[:40]]
    return {"steps": steps, "wall_ms": wall_ms, "ops": ops}


def model_config(args):
    if args.from_bench:
        with open(args.from_bench) as f:
            bench = json.load(f)
        config = dict(bench["model"])
        config["batch_size"] = bench["batch_size"]
    else:
        layers, width, heads, context = PRESETS[args.preset]
        config = {"vocab_size": 256, "layers": layers, "width": width, "heads": heads, "context": context,
                  "mlp_ratio": 4, "mlp": "squared_relu", "rope_base": 10000.0, "norm_eps": 1e-6,
                  "batch_size": args.batch_size}
    if config.get("mlp", "squared_relu") != "squared_relu":
        sys.exit(f"lm_pytorch_reference.py: only the squared-ReLU MLP is written here, not {config['mlp']}")
    return config


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-bench", help="a bittorch-lm bench --json file: its model and batch size")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="without --from-bench")
    parser.add_argument("--batch-size", type=int, default=8, help="without --from-bench")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timed ones (compilation included)")
    parser.add_argument("--modes", default="eager,compile", help="eager, compile or both")
    parser.add_argument("--variants", default="baseline,bitnet", help="baseline, bitnet or both")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--profile", metavar="DIR", help="profile 3 more steps of each run: Chrome traces here")
    args = parser.parse_args()
    for name, value in (("--steps", args.steps), ("--warmup", args.warmup)):
        if value < 1:
            parser.error(f"{name} must be >= 1, not {value}")
    modes, variants = args.modes.split(","), args.variants.split(",")
    for name, values, allowed in (("--modes", modes, {"eager", "compile"}), ("--variants", variants, {"baseline", "bitnet"})):
        if not set(values) <= allowed:
            parser.error(f"{name}: {','.join(values)} is not a comma-separated list of {', '.join(sorted(allowed))}")
    config = model_config(args)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    results = []
    for mode in modes:
        for variant in variants:
            result = run(config, variant, mode, args)
            memory = f", peak {result['peak_memory_bytes'] / 2**30:.2f} GiB" if "peak_memory_bytes" in result else ""
            print(f"{mode:8s} {variant:7s} {result['tokens_per_second']:12.0f} tokens/s  "
                  f"{result['step_ms']:8.1f} ms/step{memory}", flush=True)
            results.append(result)
    document = {"torch": torch.__version__, "device": str(args.device), "model": config,
                "steps": args.steps, "warmup": args.warmup, "runs": results}
    if args.device.startswith("cuda"):
        document["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)


if __name__ == "__main__":
    main()
