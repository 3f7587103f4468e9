#pragma once

// bittorch::ternary_linear and its two halves: ternary_linear_quantize_weight (the weight's
// half, to keep while the weight does not change) and ternary_linear_quantized (the layer from
// that quantized weight, differentiable); ternary_linear is their composition, so both run
// one forward and one backward (schemas in src/ops/ternary_linear/ternary_linear.cpp).
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
/// (straight-through as well). scale_mode "max" | "absmean". gradient_format "float8_e5m2":
/// the backward's grad_input product takes the output gradient in FP8 e5m2
/// (quant::GradientFormat); "none": in its dtype. Bad arguments are a c10::Error naming
/// `bittorch::ternary_linear` and the argument.
BITTORCH_API at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                       c10::string_view scale_mode, c10::string_view activation_format,
                                       c10::string_view gradient_format = "none");

/// The weight's half of the forward, to keep while the weight does not change:
/// (operand, codes, scale), with operand = codes * scale in `dtype` when keep_operand or
/// activation_format is "none" (else undefined), and codes in the 8-bit format's dtype (int8
/// or float8_e4m3fn) for an 8-bit format (else undefined). Not differentiable.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_quantize_weight(
    const at::Tensor& weight, double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, at::ScalarType dtype, bool keep_operand);

/// ternary_linear from a weight quantized by ternary_linear_quantize_weight (for the input's
/// dtype and this activation_format): the same output and gradients, without quantizing
/// `weight` again. `weight` is the master weight it came from: it receives grad_weight by the
/// straight-through estimator and is not read. grad_input needs the operand.
/// With an 8-bit format, input_values and input_scale may pass the input already quantized
/// (ops::quantize_activations(input, activation_format), as a fused op such as
/// ops::squared_relu_quantized returns it): the product reads them instead of quantizing the
/// input, which the backward still takes for grad_weight. They are taken as given: values of
/// another input give another output.
BITTORCH_API at::Tensor ternary_linear_quantized(const at::Tensor& input, const at::Tensor& weight,
                                                 const std::optional<at::Tensor>& operand,
                                                 const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                                 const std::optional<at::Tensor>& bias,
                                                 c10::string_view activation_format,
                                                 c10::string_view gradient_format = "none",
                                                 const std::optional<at::Tensor>& input_values = std::nullopt,
                                                 const std::optional<at::Tensor>& input_scale = std::nullopt);

/// The checks ternary_linear makes of its arguments, with its messages: for a caller that
/// composes it from its halves (nn::functional::ternary_linear with a kept weight).
BITTORCH_API void check_ternary_linear_args(const at::Tensor& input, const at::Tensor& weight,
                                            const std::optional<at::Tensor>& bias, double threshold_factor,
                                            c10::string_view scale_mode, c10::string_view activation_format,
                                            c10::string_view gradient_format);

/// (grad_input, grad_weight, grad_bias) by the straight-through estimator; an entry whose
/// output_mask is false comes back undefined. gradient_format as in ternary_linear (grad_input
/// from the codes, which the operand's signs are).
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, c10::string_view gradient_format = "none");

}  // namespace bittorch::ops
