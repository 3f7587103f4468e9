"""The bittorch ops from Python: torch.ops.load_library, then torch.ops.bittorch.*,
checked against a reference written here from the formulas, in float64."""
import sys

import torch


def reference(x, w, b, threshold_factor, per_channel, scale_mode):
    w = w.double()
    absw = w.abs()
    if scale_mode == "max":
        scale = absw.amax(1) if per_channel else absw.max().reshape(1)
    else:
        scale = absw.mean(1) if per_channel else absw.mean().reshape(1)
    scale = scale.clamp_min(1e-8)
    s = scale[:, None]
    if scale_mode == "max":
        codes = torch.where(absw > threshold_factor * s, torch.sign(w), torch.zeros_like(w))
    else:
        codes = torch.clamp(torch.round(w / s), -1, 1)
    w_eff = codes * s
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
        failures += check_errors(device)
        if device == "cuda":
            failures += check_cuda_against_reference()
    print(f"{'passed' if failures == 0 else 'FAILED'}: {failures} mismatches")
    return 1 if failures else 0


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
