"""The bittorch ops from Python: torch.ops.load_library, then torch.ops.bittorch.*,
checked against a reference written here from the formulas, in float64."""
import sys

import torch

from formulas import reference_ternarize


def reference(x, w, b, threshold_factor, per_channel, scale_mode):
    codes, scale = reference_ternarize(w, threshold_factor, per_channel, scale_mode)
    w_eff = codes * scale[:, None]
    return x.double() @ w_eff.T + b.double(), codes, scale, w_eff


def main():
    torch.ops.load_library(sys.argv[1])
    torch.manual_seed(0)
    failures = 0
    for scale_mode in ("max", "absmean"):
        for per_channel in (True, False):
            x = torch.randn(5, 3, 11, dtype=torch.float64, requires_grad=True)
            w = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
            b = torch.randn(7, dtype=torch.float64, requires_grad=True)
            y = torch.ops.bittorch.ternary_linear(x, w, b, 0.1, per_channel, scale_mode)
            g = torch.randn_like(y)
            y.backward(g)
            ref_y, ref_codes, ref_scale, w_eff = reference(x.detach(), w.detach(), b.detach(), 0.1,
                                                           per_channel, scale_mode)
            codes, scale = torch.ops.bittorch.ternarize(w.detach(), 0.1, per_channel, scale_mode)
            g2 = g.reshape(-1, 7)
            checks = {
                "output": torch.allclose(y, ref_y),
                "codes": torch.equal(codes, ref_codes),
                "scale": torch.allclose(scale, ref_scale),
                "grad_input": torch.allclose(x.grad, g @ w_eff),
                "grad_weight": torch.allclose(w.grad, ref_scale[:, None] * (g2.T @ x.detach().reshape(-1, 11))
                                              if per_channel else ref_scale * (g2.T @ x.detach().reshape(-1, 11))),
                "grad_bias": torch.allclose(b.grad, g2.sum(0)),
            }
            for name, ok in checks.items():
                status = "ok" if ok else "MISMATCH"
                print(f"{scale_mode:8s} per_channel={per_channel!s:5s} {name:12s} {status}", flush=True)
                failures += not ok
    # Schema defaults and errors reach Python too.
    print("schema defaults and errors", flush=True)
    y = torch.ops.bittorch.ternary_linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.shape == (2, 3), y.shape
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        failures += check_opcheck(device)
        failures += check_master_weight_contract(device)
        failures += check_compile_and_export(device)
        failures += check_errors(device)
        if device == "cuda":
            failures += check_cuda_against_reference()
    print(f"{'passed' if failures == 0 else 'FAILED'}: {failures} mismatches")
    return 1 if failures else 0


def check_opcheck(device):
    """torch.library.opcheck over every op: schema, autograd registration, fake (meta)
    implementation and AOT dispatch against the real kernels."""
    print(f"opcheck on {device}", flush=True)
    failures = 0
    ops = torch.ops.bittorch
    x = torch.randn(3, 2, 16, device=device)
    w = torch.randn(8, 16, device=device)
    b = torch.randn(8, device=device)
    packed = torch.randint(-2**31, 2**31 - 1, (8, 1), dtype=torch.int32, device=device)
    packed = packed & 0x55555555  # fields 00 and 01 only: codes 0 and +1, a valid matrix
    # Weights quantized once, as a TernaryLinear keeps them: (operand, codes, scale).
    kept_none = ops._ternary_linear_quantize_weight(w, 0.05, True, "max", "none", torch.float32, True)
    kept_int8 = ops._ternary_linear_quantize_weight(w, 0.05, True, "max", "int8", torch.float32, True)
    cases = [
        (ops.ternarize.default, (w, 0.05, True, "max")),
        (ops.ternarize.default, (w, 0.05, False, "absmean")),
        (ops.quantize_activations.default, (x, "int8")),
        (ops.ternary_linear.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                      b.clone().requires_grad_(), 0.05, True, "max", "none")),
        (ops.ternary_linear.default, (x.clone().requires_grad_(), w.clone().requires_grad_(), None, 0.05, False,
                                      "absmean", "int8")),
        (ops.ternary_linear.default, (x.bfloat16().requires_grad_(), w.clone().requires_grad_(),
                                      b.bfloat16().requires_grad_(), 0.05, True, "max", "none")),
        (ops.ternary_linear.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                      b.clone().requires_grad_(), 0.05, True, "max", "int8", "float8_e5m2")),
        (ops._ternary_linear_quantize_weight.default, (w, 0.05, True, "max", "none", torch.float32, False)),
        (ops._ternary_linear_quantize_weight.default, (w, 0.05, False, "absmean", "int8", torch.bfloat16, True)),
        (ops.ternary_linear_quantized.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                                *kept_none[:2], kept_none[2], b.clone().requires_grad_(), "none")),
        (ops.ternary_linear_quantized.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                                *kept_int8[:2], kept_int8[2], None, "int8")),
        (ops.ternary_linear_quantized.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                                *kept_none[:2], kept_none[2], None, "none", "float8_e5m2")),
        (ops.ternary_linear_quantized.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                                *kept_int8[:2], kept_int8[2], b.clone().requires_grad_(), "int8",
                                                "none", *ops.quantize_activations(x, "int8"))),
        (ops.packed_ternary_linear.default, (x, packed, torch.rand(8, device=device) + 0.1, b, 16, "none", "auto")),
        (ops.packed_ternary_linear.default, (x.half(), packed, torch.rand(8, device=device) + 0.1, b.half(), 16,
                                             "int8", "auto")),
        (ops.packed_ternary_linear.default, (x, packed, torch.rand(8, device=device) + 0.1, b, 16, "none", "auto",
                                             "squared_relu")),
        (ops.add_rms_norm_packed_linear.default, (x, torch.randn(3, 2, 16, device=device), torch.rand(16, device=device),
                                                  1e-6, packed, torch.rand(8, device=device) + 0.1, b, 16)),
        (ops.add_rms_norm_packed_linear.default, (x.bfloat16(), x.bfloat16(), torch.rand(16, device=device).bfloat16(),
                                                  1e-5, packed, torch.rand(8, device=device) + 0.1, None, 16, "none",
                                                  "squared_relu")),
        (ops.decode_attention.default, (torch.randn(2, 3, 8, device=device), torch.randn(2, 3, 8, device=device),
                                        torch.randn(2, 3, 8, device=device), torch.randn(2, 3, 5, 8, device=device),
                                        torch.randn(2, 3, 5, 8, device=device),
                                        torch.tensor([2], device=device), torch.rand(5, 8, device=device),
                                        torch.rand(5, 8, device=device))),
        (ops.linear_cross_entropy.default, (x.clone().requires_grad_(), w.clone().requires_grad_(),
                                            torch.randint(0, 8, (3, 2), device=device), -100, 0)),
        (ops.linear_cross_entropy.default, (x.bfloat16().requires_grad_(), w.bfloat16().requires_grad_(),
                                            torch.randint(0, 8, (3, 2), device=device), 1, 4)),
        (ops.add_rms_norm.default, (x.clone().requires_grad_(), torch.randn(3, 2, 16, device=device).requires_grad_(),
                                    torch.rand(16, device=device).requires_grad_(), 1e-6)),
        (ops.add_rms_norm.default, (x.clone().requires_grad_(), x.bfloat16().requires_grad_(),
                                    torch.rand(16, device=device).requires_grad_(), 1e-5)),
        (ops.add_rms_norm.default, (x.clone().requires_grad_(), torch.randn(3, 2, 16, device=device).requires_grad_(),
                                    torch.rand(16, device=device).requires_grad_(), 1e-6, torch.bfloat16)),
        (ops.squared_relu.default, (x.clone().requires_grad_(),)),
        (ops.squared_relu.default, (x.bfloat16().requires_grad_(),)),
        (ops._squared_relu_backward.default, (torch.randn(3, 2, 16, device=device), x.square())),
        (ops.squared_relu_quantized.default, (x.clone().requires_grad_(), "int8")),
        # int8: opcheck's AOT check sums every output, and ATen has no sum of float8 on the CPU.
        (ops.squared_relu_quantized.default, (x.bfloat16().requires_grad_(), "int8")),
        (ops.squared_relu_mlp.default, (x.clone().requires_grad_(), torch.randn(24, 16, device=device).requires_grad_(),
                                        torch.randn(8, 24, device=device).requires_grad_())),
        (ops.squared_relu_mlp.default, (x.bfloat16(), torch.randn(24, 16, device=device, dtype=torch.bfloat16),
                                        torch.randn(8, 24, device=device, dtype=torch.bfloat16).requires_grad_())),
        (ops._squared_relu_mlp_backward.default, (torch.randn(3, 2, 8, device=device), x,
                                                  torch.rand(3, 2, 24, device=device), torch.randn(24, 16, device=device),
                                                  torch.randn(8, 24, device=device), [True, False, True])),
        (ops.rotary_embedding.default, (torch.randn(2, 5, 3, 8, device=device).transpose(1, 2).requires_grad_(),
                                        torch.randn(2, 1, 5, 8, device=device).requires_grad_(),
                                        torch.rand(5, 8, device=device), torch.rand(5, 8, device=device))),
        (ops.rotary_embedding.default, (torch.randn(1, 2, 3, 4, device=device, dtype=torch.bfloat16),
                                        torch.randn(1, 2, 3, 4, device=device, dtype=torch.bfloat16),
                                        torch.rand(3, 4, device=device), torch.rand(3, 4, device=device))),
        (ops._rotary_embedding_backward.default, (torch.randn(1, 2, 3, 4, device=device),
                                                  torch.randn(1, 1, 3, 4, device=device),
                                                  torch.rand(3, 4, device=device), torch.rand(3, 4, device=device))),
        (ops.rotary_embedding_split.default, (torch.randn(2, 5, 4 * 8, device=device).requires_grad_(), 2,
                                              torch.rand(5, 8, device=device), torch.rand(5, 8, device=device))),
        (ops.rotary_embedding_split.default, (torch.randn(1, 3, 6 * 4, device=device, dtype=torch.bfloat16), 4,
                                              torch.rand(3, 4, device=device), torch.rand(3, 4, device=device))),
        (ops._rotary_embedding_split_backward.default, (torch.randn(1, 2, 3, 4, device=device),
                                                        torch.randn(1, 1, 3, 4, device=device),
                                                        torch.randn(1, 1, 3, 4, device=device),
                                                        torch.rand(3, 4, device=device),
                                                        torch.rand(3, 4, device=device))),
        (ops._add_rms_norm_forward.default, (x, x.half(), torch.rand(16, device=device), 1e-6)),
        (ops._add_rms_norm_forward.default, (x, x, torch.rand(16, device=device), 1e-6, torch.half)),
        (ops._add_rms_norm_backward.default, (x.bfloat16(), x, x, torch.rand(16, device=device),
                                              torch.rand(3, 2, device=device) + 0.5, [True, True], torch.bfloat16)),
        (ops._linear_cross_entropy_forward.default, (x, w, torch.randint(0, 8, (3, 2), device=device), -100, 2,
                                                     True)),
        # Greedy only: opcheck compares calls whose random draws would differ.
        (ops.sample_tokens.default, (torch.randn(3, 20, device=device), 0.0)),
        (ops.sample_tokens.default, (torch.randn(3, 20, device=device, dtype=torch.bfloat16), 0.0, 5)),
    ]
    for op, args in cases:
        try:
            torch.library.opcheck(op, args)
            print(f"  {op} ok", flush=True)
        except Exception as error:  # noqa: BLE001 - report every failing op
            print(f"  {op} FAILED: {error}", flush=True)
            failures += 1
    return failures


def check_master_weight_contract(device):
    """A float16/bfloat16 input with a float32 master weight: called directly (no autocast),
    the output is in the input's dtype and the weight's gradient in float32."""
    print(f"master-weight dtype contract on {device}", flush=True)
    failures = 0
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(4, 32, device=device, dtype=dtype, requires_grad=True)
        w = torch.randn(16, 32, device=device, requires_grad=True)
        b = torch.randn(16, device=device, dtype=dtype, requires_grad=True)
        y = torch.ops.bittorch.ternary_linear(x, w, b, 0.05, True, "absmean")
        y.float().sum().backward()
        ref_y, _, ref_scale, w_eff = reference(x.detach().double().cpu(), w.detach().cpu(), b.detach().double().cpu(),
                                               0.05, True, "absmean")
        ok = (y.dtype == dtype and w.grad.dtype == torch.float32 and x.grad.dtype == dtype
              and torch.allclose(y.double().cpu(), ref_y, rtol=3e-2, atol=3e-2))
        print(f"  {dtype} {'ok' if ok else 'MISMATCH'}", flush=True)
        failures += not ok
    return failures


class TinyTernaryModel(torch.nn.Module):
    def __init__(self, device):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(32, 16, device=device))
        self.w2 = torch.nn.Parameter(torch.randn(4, 32, device=device))

    def forward(self, x):
        h = torch.relu(torch.ops.bittorch.ternary_linear(x, self.w1, None, 0.05, True, "absmean"))
        return torch.ops.bittorch.ternary_linear(h, self.w2)


class TinyClassifierLoss(torch.nn.Module):
    def __init__(self, device):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(5, 16, device=device))

    def forward(self, x, target):
        return torch.ops.bittorch.linear_cross_entropy(x, self.w, target, -100, 2)


class TinyAddNorm(torch.nn.Module):
    def __init__(self, device):
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(16, device=device) + 0.5)

    def forward(self, x, r):
        output, total = torch.ops.bittorch.add_rms_norm(x, r, self.w, 1e-6)
        return (torch.ops.bittorch.squared_relu(output) * total).sum()


class TinyRotary(torch.nn.Module):
    """Queries and keys [rows, 2 heads, 6 positions, 8] scaled by `w`, rotated, then paired."""

    def __init__(self, device):
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(8, device=device) + 0.5)
        self.cos, self.sin = torch.rand(6, 8, device=device), torch.rand(6, 8, device=device)

    def forward(self, q, k):
        rotated_q, rotated_k = torch.ops.bittorch.rotary_embedding(q * self.w, k, self.cos, self.sin)
        return (rotated_q * rotated_k).sum()


def check_compile_and_export(device):
    """torch.compile (AOT autograd over the meta kernels, forward and backward, dynamic batch)
    and torch.export give the eager results."""
    print(f"torch.compile and torch.export on {device}", flush=True)
    failures = 0
    model = TinyTernaryModel(device)
    compiled = torch.compile(model, backend="aot_eager", dynamic=True, fullgraph=True)
    for rows in (3, 7):
        x = torch.randn(rows, 16, device=device)
        eager = model(x)
        (eager_grad,) = torch.autograd.grad(eager.sum(), model.w1)
        out = compiled(x)
        (grad,) = torch.autograd.grad(out.sum(), model.w1)
        ok = torch.allclose(out, eager) and torch.allclose(grad, eager_grad)
        print(f"  compile rows={rows} {'ok' if ok else 'MISMATCH'}", flush=True)
        failures += not ok
    x = torch.randn(5, 16, device=device)
    exported = torch.export.export(model, (x,))
    ok = torch.allclose(exported.module()(x), model(x))
    print(f"  export {'ok' if ok else 'MISMATCH'}", flush=True)
    failures += not ok
    # The fused classifier loss; the residual add fused with its norm, then the squared ReLU.
    failures += check_compiled_loss("linear_cross_entropy", TinyClassifierLoss(device),
                                    lambda rows: (torch.randn(rows, 16, device=device),
                                                  torch.randint(0, 5, (rows,), device=device)))
    failures += check_compiled_loss("add_rms_norm, squared_relu", TinyAddNorm(device),
                                    lambda rows: (torch.randn(rows, 16, device=device),
                                                  torch.randn(rows, 16, device=device)))
    failures += check_compiled_loss("rotary_embedding", TinyRotary(device),
                                    lambda rows: (torch.randn(rows, 6, 2, 8, device=device).transpose(1, 2),
                                                  torch.randn(rows, 2, 6, 8, device=device)))
    return failures


def check_compiled_loss(name, module, make_args):
    """A module returning a scalar of its parameter `w`: compiled (forward and backward, dynamic
    rows) and exported give the eager loss and gradient."""
    failures = 0
    compiled = torch.compile(module, backend="aot_eager", dynamic=True, fullgraph=True)
    for rows in (3, 7):
        args = make_args(rows)
        eager = module(*args)
        (eager_grad,) = torch.autograd.grad(eager, module.w)
        out = compiled(*args)
        (grad,) = torch.autograd.grad(out, module.w)
        ok = torch.allclose(out, eager) and torch.allclose(grad, eager_grad)
        print(f"  compile {name} rows={rows} {'ok' if ok else 'MISMATCH'}", flush=True)
        failures += not ok
    exported = torch.export.export(module, args)
    ok = torch.allclose(exported.module()(*args), module(*args))
    print(f"  export {name} {'ok' if ok else 'MISMATCH'}", flush=True)
    return failures + (not ok)


def expect_runtime_error(call, *needles):
    """1 if `call` does not raise a RuntimeError that mentions every needle, else 0. A C++
    exception that cannot cross into Python (two copies of the C++ runtime in the process)
    kills the interpreter here instead."""
    try:
        call()
    except RuntimeError as error:
        missing = [n for n in needles if n not in str(error)]
        if missing:
            print(f"error message lacks {missing}: {error}")
            return 1
        return 0
    print(f"no RuntimeError from {call}")
    return 1


def check_errors(device):
    """Every call that should fail raises RuntimeError, many times over, on `device`."""
    print(f"errors on {device}", flush=True)
    failures = 0
    w = torch.randn(3, 4, device=device)
    nan_w = w.clone()
    nan_w[1, 2] = float("nan")
    packed = torch.zeros(3, 1, dtype=torch.int32, device=device)
    for _ in range(50):
        failures += expect_runtime_error(lambda: torch.ops.bittorch.ternary_linear(torch.randn(2, 5, device=device), w),
                                         "in_features = 4")
        failures += expect_runtime_error(lambda: torch.ops.bittorch.ternarize(nan_w), "non-finite", "[1, 2]")
        failures += expect_runtime_error(
            lambda: torch.ops.bittorch.ternary_linear(torch.randn(2, 4, device=device), w, None, 0.05, True, "median"),
            "scale_mode")
        failures += expect_runtime_error(
            lambda: torch.ops.bittorch.packed_ternary_linear(torch.randn(2, 4, device=device), packed,
                                                             torch.ones(3, device=device), None, 17),
            "in_features = 17")
    # The library still works after all those errors.
    y = torch.ops.bittorch.ternary_linear(torch.randn(2, 4, device=device), w)
    assert y.shape == (2, 3) and y.device.type == device
    return failures


def check_cuda_against_reference():
    """The CUDA kernels from Python: forward and gradients against the float64 reference."""
    print("cuda forward and backward", flush=True)
    failures = 0
    for scale_mode in ("max", "absmean"):
        x = torch.randn(6, 32, device="cuda", requires_grad=True)
        w = torch.randn(16, 32, device="cuda", requires_grad=True)
        b = torch.randn(16, device="cuda", requires_grad=True)
        y = torch.ops.bittorch.ternary_linear(x, w, b, 0.1, True, scale_mode)
        g = torch.randn_like(y)
        y.backward(g)
        ref_y, _, ref_scale, w_eff = reference(x.detach().cpu(), w.detach().cpu(), b.detach().cpu(), 0.1, True,
                                               scale_mode)
        checks = {
            "output": torch.allclose(y.double().cpu(), ref_y, rtol=1e-4, atol=1e-4),
            "grad_input": torch.allclose(x.grad.double().cpu(), g.double().cpu() @ w_eff, rtol=1e-4, atol=1e-4),
            "grad_bias": torch.allclose(b.grad.double().cpu(), g.double().cpu().sum(0), rtol=1e-4, atol=1e-4),
        }
        for name, ok in checks.items():
            print(f"cuda {scale_mode:8s} {name:12s} {'ok' if ok else 'MISMATCH'}", flush=True)
            failures += not ok
    return failures


if __name__ == "__main__":
    sys.exit(main())
