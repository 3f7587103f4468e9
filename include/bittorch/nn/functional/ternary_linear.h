#pragma once

#include <bittorch/nn/options/ternary_linear.h>

#include <ATen/core/Tensor.h>

namespace bittorch::nn::functional {

/// y = x @ (w_tern * scale)^T + bias, with w_tern, scale = ternarize(weight) and
/// straight-through gradients (scale detached):
///   grad_x = grad_y @ (w_tern * scale),  grad_w = scale[:, None] * (grad_y^T @ x),
///   grad_b = sum of grad_y.
/// `input` is [*, in_features], `weight` [out_features, in_features], `bias` [out_features]
/// or undefined. With `options.activation_bits(8)` x is first quantized per row to 8 bits
/// (see bittorch::quant::activation_format_for), straight-through in the backward.
/// With `options.quantize(false)` this is torch::nn::functional::linear.
BITTORCH_API at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                                       const at::Tensor& bias = {},
                                       const TernaryLinearFuncOptions& options = {});

}  // namespace bittorch::nn::functional
