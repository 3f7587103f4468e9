#pragma once

// Typed C++ entry points to the bittorch:: dispatcher ops (schemas in src/ops/schema.cpp).
// Calling through the dispatcher picks the Autograd, CPU, CUDA or Meta implementation. Formats
// are named as the schemas spell them: scale_mode "max" | "absmean", activation_format
// "none" | "int8" | "float8_e4m3".

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// (codes, scale) of a 2-D weight; see bittorch::quant::ternarize.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                                          bool per_channel, c10::string_view scale_mode);

/// (values, scale) of an input quantized per row; see bittorch::quant::quantize_activations.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& input,
                                                                     c10::string_view format);

/// The differentiable ternary linear layer.
BITTORCH_API at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, double threshold_factor,
                                       bool per_channel, c10::string_view scale_mode,
                                       c10::string_view activation_format);

/// Forward without autograd: (output, operand, scale), where operand = codes * scale in the
/// input's dtype, to be handed back to ternary_linear_backward (undefined with 8-bit
/// activations unless keep_operand).
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, bool keep_operand);

/// The packed inference layer; see bittorch::nn::PackedTernaryLinear.
BITTORCH_API at::Tensor packed_ternary_linear(const at::Tensor& input, const at::Tensor& packed,
                                              const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                              int64_t in_features, c10::string_view activation_format);

/// (grad_input, grad_weight, grad_bias) by the straight-through estimator; an entry whose
/// output_mask is false comes back undefined.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask);

}  // namespace bittorch::ops
