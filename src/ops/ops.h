#pragma once

// Typed C++ entry points to the bittorch:: dispatcher ops (declared in ops/schema.cpp).
// Calling through the dispatcher picks the Autograd, CPU, CUDA or Meta implementation.

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// (codes, scale) of a 2-D weight; see bittorch::quant::ternarize.
std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                             bool per_channel, c10::string_view scale_mode);

/// (values, scale) of an input quantized per row; see bittorch::quant::quantize_activations.
std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& input,
                                                        c10::string_view format);

/// The differentiable ternary linear layer.
at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, double threshold_factor,
                          bool per_channel, c10::string_view scale_mode,
                          c10::string_view activation_format);

/// Forward without autograd: (output, operand, scale), where operand = codes * scale in the
/// input's dtype, to be handed back to ternary_linear_backward (undefined with 8-bit
/// activations unless keep_operand).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, bool keep_operand);

/// The packed inference layer; see bittorch::nn::PackedTernaryLinear.
at::Tensor packed_ternary_linear(const at::Tensor& input, const at::Tensor& packed,
                                 const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                 int64_t in_features, c10::string_view activation_format);

/// (grad_input, grad_weight, grad_bias) by the straight-through estimator; an entry whose
/// output_mask is false comes back undefined.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask);

}  // namespace bittorch::ops
