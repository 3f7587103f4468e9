#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

namespace bittorch::ops {

/// The parsed settings of a checked ternary_linear call.
struct LinearArgs {
  quant::ScaleMode scale_mode;
  quant::ActivationFormat activation_format;
};

/// check_ternarize_args, an activation format, and an operand `dtype` in the same dtype
/// contract (8-bit formats need float32, float16 or bfloat16).
LinearArgs check_quantize_weight_args(const char* op, const at::Tensor& weight, double threshold_factor,
                                      c10::string_view scale_mode, c10::string_view activation_format,
                                      at::ScalarType dtype);

/// The quantized weight's forward: input [*, in_features]; `operand` [out, in] in the input's
/// dtype (needed for format none), `codes` [out, in] in the format's 8-bit dtype (needed for
/// an 8-bit format), scale [out] or [1] in scale_dtype(input), bias [out] in the input's
/// dtype, all on the input's device; input_values and input_scale (the input quantized, an
/// 8-bit format only) both or neither. Returns the format.
quant::ActivationFormat check_quantized_linear_args(const char* op, const at::Tensor& input,
                                                    const std::optional<at::Tensor>& operand,
                                                    const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                                    const std::optional<at::Tensor>& bias,
                                                    c10::string_view activation_format,
                                                    const std::optional<at::Tensor>& input_values,
                                                    const std::optional<at::Tensor>& input_scale);

/// The backward's gradient format: "none", or "float8_e5m2" for a float32, float16 or bfloat16
/// grad_output.
quant::GradientFormat check_backward_args(const char* op, const at::Tensor& grad_output,
                                          c10::string_view gradient_format);

/// The typed entry of the private _ternary_linear_quantized_forward.
at::Tensor ternary_linear_quantized_forward(const at::Tensor& input, const std::optional<at::Tensor>& operand,
                                            const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                            const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                            const std::optional<at::Tensor>& input_values,
                                            const std::optional<at::Tensor>& input_scale);

}  // namespace bittorch::ops
