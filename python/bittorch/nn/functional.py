"""Functional forms of the ternary layer (C++: bittorch::nn::functional)."""
import torch

from bittorch.quant import QuantConfig, activation_format, quantize_activations, ternarize


class _DequantizeSte(torch.autograd.Function):
    """codes * scale in `dtype`; backward: the straight-through estimator (grad * scale)."""

    @staticmethod
    def forward(ctx, weight, config, dtype):
        codes, scale = ternarize(weight, config.threshold_factor, config.per_channel, config.scale_mode)
        ctx.save_for_backward(scale)
        return (codes.to(scale.dtype) * scale.unsqueeze(1)).to(dtype)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return (grad.to(scale.dtype) * scale.unsqueeze(1)).to(grad.dtype), None, None


class _QuantizeActivationsSte(torch.autograd.Function):
    """dequantize(quantize(x)) in x's dtype; backward: the identity."""

    @staticmethod
    def forward(ctx, input, format):
        values, scale = quantize_activations(input, format)
        return (values.to(torch.float32) * scale).to(input.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def ternary_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                   threshold_factor: float = 0.05, per_channel: bool = True, scale_mode: str = "max",
                   activation_bits: int = 0, *, quantize: bool = True, use_cuda_kernel: bool = True,
                   gradient_bits: int = 0):
    """y = x @ (codes * scale)^T + bias with the straight-through estimator in the backward.

    The fused op (torch.ops.bittorch.ternary_linear: CPU, CUDA, Meta, Autograd, Autocast
    implementations) runs unless use_cuda_kernel is False, which takes the unfused path: the
    weight dequantized as an autograd node of its own, then torch's linear (as the C++
    library's TernaryLinearFuncOptions().fused(false)). quantize=False: plain linear.
    gradient_bits=8: grad_input from FP8 e5m2 gradients (QuantConfig; the fused op only).
    """
    if not quantize:
        return torch.nn.functional.linear(input, weight, bias)
    config = QuantConfig(threshold_factor, per_channel, scale_mode, activation_bits, gradient_bits)
    format = activation_format(activation_bits, input.device)
    if not use_cuda_kernel:
        if gradient_bits:
            raise ValueError("bittorch.nn.functional.ternary_linear: gradient_bits=8 needs the fused op "
                             "(use_cuda_kernel=True)")
        if input.dtype != weight.dtype:
            raise RuntimeError(f"bittorch.nn.functional.ternary_linear: expected input and weight of the same dtype, "
                               f"but got input {input.dtype} and weight {weight.dtype}")
        used_input = input if format == "none" else _QuantizeActivationsSte.apply(input, format)
        return torch.nn.functional.linear(used_input, _DequantizeSte.apply(weight, config, input.dtype), bias)
    return torch.ops.bittorch.ternary_linear(input, weight, bias, threshold_factor, per_channel, scale_mode, format,
                                             config.gradient_format)
