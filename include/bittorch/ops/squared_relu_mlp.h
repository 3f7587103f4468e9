#pragma once

// bittorch::squared_relu_mlp: BitNet's MLP, down(max(up(x), 0)^2), as one op, so that on Hopper
// the activation runs in the epilogues of the products around it: the up projection's output
// is squared as it is written, and the down projection's input gradient is multiplied by the
// activation's derivative as it is written (schema in src/ops/squared_relu_mlp/squared_relu_mlp.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace bittorch::ops {

/// output = max(input @ up_weight^T, 0)^2 @ down_weight^T for input [*, features], up_weight
/// [hidden, features] and down_weight [features_out, hidden], all of one dtype (float32,
/// float64, float16, bfloat16): two bias-free linear layers and the squared ReLU between them.
/// The hidden activation is rounded to that dtype once (on the unfused path the up projection's
/// output is rounded, then its square). Under CUDA autocast all three run in the autocast dtype,
/// a float32 weight cast as torch::nn::Linear's is (the cast kept for the autocast region).
/// Differentiable in all three; the backward keeps the input and the hidden activation.
/// On a compute capability 9.0 GPU with bfloat16 operands whose widths are multiples of 8 the
/// two products with the activation in their epilogue are CUTLASS kernels; elsewhere the op
/// composes the products and ops::squared_relu.
BITTORCH_API at::Tensor squared_relu_mlp(const at::Tensor& input, const at::Tensor& up_weight,
                                         const at::Tensor& down_weight);

/// (output, hidden): the forward, with hidden = max(input @ up_weight^T, 0)^2 [*, hidden] kept
/// for the backward.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> _squared_relu_mlp_forward(const at::Tensor& input,
                                                                          const at::Tensor& up_weight,
                                                                          const at::Tensor& down_weight);

/// (grad_input, grad_up_weight, grad_down_weight) from the forward's input and hidden: with
/// grad_hidden = (grad_output @ down_weight) * 2 * sqrt(hidden), grad_input = grad_hidden @
/// up_weight, grad_up_weight = grad_hidden^T @ input, grad_down_weight = grad_output^T @ hidden
/// (rows summed over all leading dimensions). An entry whose output_mask is false comes back
/// undefined.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> _squared_relu_mlp_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& up_weight,
    const at::Tensor& down_weight, std::array<bool, 3> output_mask);

}  // namespace bittorch::ops
