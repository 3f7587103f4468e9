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
    try:
        torch.ops.bittorch.ternary_linear(torch.randn(2, 5), torch.randn(3, 4))
        print("wrong in_features was accepted")
        failures += 1
    except RuntimeError as error:
        assert "in_features = 4" in str(error), str(error)
    print(f"{'passed' if failures == 0 else 'FAILED'}: {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
