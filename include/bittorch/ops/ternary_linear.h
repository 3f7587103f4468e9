#pragma once

// bittorch::ternary_linear and the two private ops its autograd implementation is made of
// (schemas in src/ops/ternary_linear/ternary_linear.cpp).
//
// Dtypes: input, bias and output share one dtype (float32, float64, float16 or bfloat16). The
// weight has the input's dtype, or is a float32 master weight with a float16/bfloat16 input
// (mixed-precision training): it is quantized straight into the input's dtype and its
// gradient comes back in float32.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// y = x @ (codes * scale)^T + bias, differentiable through the straight-through estimator;
/// with activation_format "int8" | "float8_e4m3" the input is first quantized per row
/// (straight-through as well). scale_mode "max" | "absmean".
BITTORCH_API at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                       c10::string_view scale_mode, c10::string_view activation_format);

/// Forward without autograd: (output, operand, scale), where operand = codes * scale in the
/// input's dtype, to be handed back to ternary_linear_backward for grad_input (undefined
/// unless keep_operand).
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, double threshold_factor,
    bool per_channel, c10::string_view scale_mode, c10::string_view activation_format, bool keep_operand);

/// (grad_input, grad_weight, grad_bias) by the straight-through estimator; an entry whose
/// output_mask is false comes back undefined.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(const at::Tensor& grad_output,
                                                                                    const at::Tensor& input,
                                                                                    const at::Tensor& operand,
                                                                                    const at::Tensor& scale,
                                                                                    std::array<bool, 3> output_mask);

}  // namespace bittorch::ops
