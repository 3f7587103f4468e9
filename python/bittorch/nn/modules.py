"""The ternary layer modules (C++: bittorch::nn::TernaryLinear, TernaryLinearCUDA)."""
import torch

from bittorch.nn import functional as F
from bittorch.quant import QuantConfig, ternarize


class TernaryLinear(torch.nn.Linear):
    """A drop-in torch.nn.Linear whose forward uses weights in {-1, 0, +1} times a scale.

    The parameters (weight [out, in], bias [out]) are float master weights, initialized and
    stored as torch.nn.Linear's, so state dicts load either way. The forward quantizes them at
    every call (BitNet b1.58); the backward is the straight-through estimator.

    The original BitTorch's arguments and defaults, then this library's as keywords:
    quantize=False computes a plain linear (debugging); use_cuda_kernel=False takes the unfused
    path (ternarize, dequantize, torch's linear); scale_mode "max" or "absmean";
    activation_bits 0 or 8 (per-row 8-bit inputs: FP8 e4m3 on CUDA GPUs of compute capability
    8.9 and later, INT8 elsewhere); gradient_bits 0 or 8 (grad_input from FP8 e5m2 gradients).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold_factor: float = 0.05,
                 per_channel: bool = True, quantize: bool = True, use_cuda_kernel: bool = True, *,
                 scale_mode: str = "max", activation_bits: int = 0, gradient_bits: int = 0, device=None,
                 dtype=None):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"bittorch.nn.TernaryLinear: in_features and out_features must be at least 1, "
                             f"not {in_features} and {out_features}")
        self.config = QuantConfig(threshold_factor, per_channel, scale_mode, activation_bits, gradient_bits)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.quantize = quantize
        self.use_cuda_kernel = use_cuda_kernel

    @property
    def threshold_factor(self) -> float:
        return self.config.threshold_factor

    @property
    def per_channel(self) -> bool:
        return self.config.per_channel

    @property
    def scale_mode(self) -> str:
        return self.config.scale_mode

    @property
    def activation_bits(self) -> int:
        return self.config.activation_bits

    @property
    def gradient_bits(self) -> int:
        return self.config.gradient_bits

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        c = self.config
        return F.ternary_linear(input, self.weight, self.bias, c.threshold_factor, c.per_channel, c.scale_mode,
                                c.activation_bits, quantize=self.quantize, use_cuda_kernel=self.use_cuda_kernel,
                                gradient_bits=c.gradient_bits)

    @torch.no_grad()
    def get_quantized_weight(self):
        """(w_tern, scale): the codes in {-1., 0., 1.} in the weight's dtype and the float32
        scale, [out_features] (per channel) or [1]."""
        return ternarize(self.weight, self.config.threshold_factor, self.config.per_channel, self.config.scale_mode)

    def extra_repr(self) -> str:
        c = self.config
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"threshold_factor={c.threshold_factor}, per_channel={c.per_channel}, scale_mode={c.scale_mode!r}, "
                f"activation_bits={c.activation_bits}, gradient_bits={c.gradient_bits}, quantize={self.quantize}")


class TernaryLinearCUDA(TernaryLinear):
    """TernaryLinear that runs the fused CUDA op only: CPU inputs raise."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not input.is_cuda:
            raise RuntimeError(f"bittorch.nn.TernaryLinearCUDA: expected a CUDA input, but got one on {input.device}")
        return super().forward(input)
