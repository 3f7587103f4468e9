"""The deployed layer: 2-bit codes, no master weights (C++: bittorch::nn::PackedTernaryLinear)."""
import torch

from bittorch.packing import pack_ternary, packed_words
from bittorch.quant import QuantConfig, activation_format


class PackedTernaryLinear(torch.nn.Module):
    """y = (x @ codes^T) * scale + bias from codes packed at 2 bits per weight (buffers:
    packed int32 [out, ceil(in / 16)], scale float32 [out], bias float32 [out] or None).
    Not differentiable; CPU and CUDA kernels (torch.ops.bittorch.packed_ternary_linear)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, config: QuantConfig = None,
                 device=None):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"bittorch.nn.PackedTernaryLinear: in_features and out_features must be at least 1, "
                             f"not {in_features} and {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.config = config or QuantConfig()
        self.register_buffer("packed", torch.zeros(out_features, packed_words(in_features), dtype=torch.int32,
                                                   device=device))
        self.register_buffer("scale", torch.ones(out_features, device=device))
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)

    @classmethod
    @torch.no_grad()
    def from_ternary(cls, layer) -> "PackedTernaryLinear":
        """The packed form of a TernaryLinear: its quantized weight, scale and bias."""
        if not layer.quantize:
            raise ValueError("bittorch.nn.PackedTernaryLinear: the layer has quantize=False and no ternary weights")
        packed = cls(layer.in_features, layer.out_features, layer.bias is not None, layer.config,
                     device=layer.weight.device)
        codes, scale = layer.get_quantized_weight()
        packed.packed.copy_(pack_ternary(codes))
        packed.scale.copy_(scale.float().expand(layer.out_features))
        if layer.bias is not None:
            packed.bias.copy_(layer.bias)
        return packed

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(input.dtype)
        return torch.ops.bittorch.packed_ternary_linear(input, self.packed, self.scale, bias, self.in_features,
                                                        activation_format(self.config.activation_bits, input.device))

    def extra_repr(self) -> str:
        c = self.config
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"threshold_factor={c.threshold_factor}, per_channel={c.per_channel}, scale_mode={c.scale_mode!r}, "
                f"activation_bits={c.activation_bits}")
