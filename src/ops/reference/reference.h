#pragma once

// The device-agnostic reference of the ops: plain ATen code written from the formulas, on
// checked arguments. It is the CPU backend; the CUDA backend reuses the pieces that are
// library products (the backward, the 8-bit epilogue), and the CUDA kernels are tested
// against it.

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// (codes in the weight's dtype, scale) of a checked, finite weight.
std::tuple<at::Tensor, at::Tensor> ternarize_reference(const at::Tensor& weight, double threshold_factor,
                                                       bool per_channel, quant::ScaleMode mode);

/// Rows whose absmax is below this are quantized as if it were this (as BitNet does), so
/// that an all-zero row has a finite scale.
constexpr float kMinActivationAbsMax = 1e-5F;

/// The largest 8-bit code of a format: 127 (int8) or 448 (FP8 e4m3).
constexpr float max_activation_code(quant::ActivationFormat format) {
  return format == quant::ActivationFormat::Int8 ? 127.0F : 448.0F;
}

/// Per-row 8-bit quantization of an input, in float32 arithmetic: scale = max(absmax,
/// kMinActivationAbsMax) / max_code, values = x / scale rounded to the format. The CUDA
/// kernel is bit-identical to it.
std::tuple<at::Tensor, at::Tensor> quantize_activations_reference(const at::Tensor& input,
                                                                  quant::ActivationFormat format);

/// (operand, codes, scale) of _ternary_linear_quantize_weight: the operand codes * scale in
/// `dtype` when keep_operand or the format is none, the codes in the 8-bit format's dtype for
/// an 8-bit format.
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_linear_weight_reference(
    const at::Tensor& weight, double threshold_factor, bool per_channel, quant::ScaleMode mode,
    quant::ActivationFormat format, at::ScalarType dtype, bool keep_operand);

/// The output of _ternary_linear_quantized_forward: input @ operand^T + bias (format none), or
/// the input quantized per row times the 8-bit codes, scaled (scale_accumulator); the
/// quantized input is input_values and input_scale where defined.
at::Tensor quantized_linear_forward_reference(const at::Tensor& input, const at::Tensor& operand,
                                              const at::Tensor& codes, const at::Tensor& scale,
                                              const std::optional<at::Tensor>& bias, quant::ActivationFormat format,
                                              const at::Tensor& input_values, const at::Tensor& input_scale);

/// The epilogue of products with ternary codes: accumulator [*, out] (sums of value * code)
/// times the input's row scales [*, 1] (if defined: 8-bit activations) and the weight scale
/// [out] or [1], plus bias, in float32, then rounded once to `dtype`.
at::Tensor scale_accumulator(const at::Tensor& accumulator, const at::Tensor& input_scale,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             at::ScalarType dtype);

/// The backward of the straight-through estimator from the forward's ternary operand
/// (codes * scale in the activations' dtype): grad_x = grad_y @ operand,
/// grad_w = scale[:, None] * (grad_y^T @ x) (in the dtype operand and scale promote to),
/// grad_b = sum of grad_y. On CUDA its products are cuBLAS calls.
/// With quant::GradientFormat::Float8E5M2, grad_x = (e5m2 values @ codes) * tensor scale from
/// quantize_gradient_reference and codes = sign(operand), the products in float32.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_reference(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, quant::GradientFormat gradient_format = quant::GradientFormat::None);

/// e5m2's largest finite value, and the floor of a gradient's absmax (an all-zero gradient
/// gets a finite scale).
constexpr float kMaxE5M2 = 57344.0F;
constexpr float kMinGradientAbsMax = 1e-30F;

/// The output gradient [rows, out] with the weight scale (scale [out] or [1]) folded in, in
/// FP8 e5m2 with one float32 scale [1]: tensor_scale = max(absmax(g * scale), 1e-30) / 57344,
/// values = (g * scale / tensor_scale) in e5m2 (round to nearest even; NaN stays NaN).
std::tuple<at::Tensor, at::Tensor> quantize_gradient_reference(const at::Tensor& grad_rows, const at::Tensor& scale);

}  // namespace bittorch::ops
