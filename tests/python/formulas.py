"""The references of the Python tests, written from the formulas (docs/cpp-api.md, "Semantics"), in float64."""
import torch


def reference_ternarize(w, threshold_factor, per_channel, scale_mode):
    """(codes, scale): scale = max |w| or mean |w| per row (or of the matrix), at least 1e-8;
    "max": codes sign(w) where |w| > threshold_factor * scale, else 0; "absmean": round(w /
    scale) within [-1, 1]."""
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
    return codes, scale
