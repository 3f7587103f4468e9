"""Quantizers and the quantization settings of a ternary layer (C++: bittorch/quant)."""
import numbers
from dataclasses import dataclass

import torch

SCALE_MODES = ("max", "absmean")


@dataclass(frozen=True)
class QuantConfig:
    """How a ternary layer quantizes (the C++ library's bittorch::quant::QuantConfig).

    scale_mode: "max" (threshold_factor * max |w| decides zeros) or "absmean" (round(w / mean |w|)).
    threshold_factor: in [0, 1], used by "max".
    per_channel: one scale per output row (True) or one for the whole matrix.
    activation_bits: 0 (inputs stay in their dtype) or 8 (quantized per row: FP8 e4m3 on CUDA
    GPUs of compute capability 8.9 and later, INT8 elsewhere).
    gradient_bits: 0 or 8 (the backward's grad_input product takes the output gradient in FP8
    e5m2, one scale per tensor with the weight scale folded in; fused op only).
    """

    threshold_factor: float = 0.05
    per_channel: bool = True
    scale_mode: str = "max"
    activation_bits: int = 0
    gradient_bits: int = 0

    def __post_init__(self):
        # The types first: a string "8" is no 8, and a comparison with a string says nothing useful.
        types = (("threshold_factor", numbers.Real, "a number"), ("per_channel", numbers.Integral, "a bool"),
                 ("scale_mode", str, "a string"), ("activation_bits", numbers.Integral, "an int"),
                 ("gradient_bits", numbers.Integral, "an int"))
        for name, kind, wanted in types:
            value = getattr(self, name)
            if not isinstance(value, kind) or (name.endswith("_bits") and isinstance(value, bool)):
                raise TypeError(f"bittorch: {name} must be {wanted}, not {type(value).__name__} {value!r}")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"bittorch: scale_mode must be one of {SCALE_MODES}, not {self.scale_mode!r}")
        if not 0.0 <= self.threshold_factor <= 1.0:
            raise ValueError(f"bittorch: threshold_factor must be in [0, 1], not {self.threshold_factor}")
        if self.activation_bits not in (0, 8):
            raise ValueError(f"bittorch: activation_bits must be 0 or 8, not {self.activation_bits}")
        if self.gradient_bits not in (0, 8):
            raise ValueError(f"bittorch: gradient_bits must be 0 or 8, not {self.gradient_bits}")

    @property
    def gradient_format(self) -> str:
        """The ops' gradient_format: "float8_e5m2" for gradient_bits 8, else "none"."""
        return "float8_e5m2" if self.gradient_bits == 8 else "none"


def activation_format(activation_bits: int, device: torch.device) -> str:
    """The ops' activation_format for activation_bits on `device`: "none", "float8_e4m3" (CUDA,
    compute capability 8.9 and later) or "int8"."""
    if activation_bits not in (0, 8):
        raise ValueError(f"bittorch: activation_bits must be 0 or 8, not {activation_bits}")
    if activation_bits == 0:
        return "none"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9):
        return "float8_e4m3"
    return "int8"


def ternarize(weight: torch.Tensor, threshold_factor: float = 0.05, per_channel: bool = True,
              scale_mode: str = "max"):
    """(codes, scale): codes in {-1, 0, +1} in the weight's dtype, scale float32 [out] or [1]."""
    QuantConfig(threshold_factor, per_channel, scale_mode)
    return torch.ops.bittorch.ternarize(weight, threshold_factor, per_channel, scale_mode)


def quantize_activations(input: torch.Tensor, format: str = "auto"):
    """(values, scale) of `input` quantized per row (last dimension): int8 or float8_e4m3fn
    values and float32 scales with input ~= values * scale. format: "int8", "float8_e4m3", or
    "auto" (the device's 8-bit format, as activation_bits=8 picks it)."""
    if format == "auto":
        format = activation_format(8, input.device)
    if format not in ("int8", "float8_e4m3"):
        raise ValueError(f"bittorch: format must be \"int8\", \"float8_e4m3\" or \"auto\", not {format!r}")
    return torch.ops.bittorch.quantize_activations(input, format)
