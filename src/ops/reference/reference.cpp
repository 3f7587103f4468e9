#include "ops/reference/reference.h"

#include "ops/common/checks.h"

#include <ATen/ATen.h>

namespace bittorch::ops {
namespace {

// codes * scale[:, None] in `dtype`.
at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scale, at::ScalarType dtype) {
  return (codes.to(scale.scalar_type()) * scale.unsqueeze(1)).to(dtype);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ternarize_reference(const at::Tensor& weight, double threshold_factor,
                                                       bool per_channel, quant::ScaleMode mode) {
  // Scales are computed in at least float32 so that the 1e-8 floor is representable.
  const at::Tensor w = weight.to(scale_dtype(weight.scalar_type()));
  const at::Tensor abs_w = w.abs();
  const bool use_max = mode == quant::ScaleMode::Max;
  // Means are taken in double, so that every backend rounds them to the same float.
  const auto mean_abs = [&](auto... dim) { return abs_w.to(at::kDouble).mean(dim...).to(w.scalar_type()); };
  at::Tensor scale =
      per_channel ? (use_max ? abs_w.amax(1) : mean_abs(1)) : (use_max ? abs_w.max() : mean_abs()).reshape({1});
  scale = scale.clamp_min(1e-8);
  const at::Tensor row_scale = scale.unsqueeze(1);
  const at::Tensor codes =
      use_max ? w.sign() * (abs_w > row_scale * threshold_factor) : (w / row_scale).round().clamp(-1, 1);
  return {codes.to(weight.scalar_type()), scale};
}

std::tuple<at::Tensor, at::Tensor> quantize_activations_reference(const at::Tensor& input,
                                                                  quant::ActivationFormat format) {
  const at::Tensor x = input.to(at::kFloat);
  // amax and clamp_min propagate NaN: a row holding NaN gets a NaN scale, one holding +-Inf
  // an infinite one, so that every output of that row is NaN (0 * Inf) as in the unquantized
  // layer. Its values are 0 (x / scale is NaN or 0 there).
  const at::Tensor scale =
      x.abs().amax(-1, /*keepdim=*/true).clamp_min(kMinActivationAbsMax).div(max_activation_code(format));
  // Division, not a multiplication by the reciprocal: the CUDA kernel rounds the same way.
  const at::Tensor scaled = at::nan_to_num(x / scale, 0.0, 0.0, 0.0);
  const float max_code = max_activation_code(format);
  at::Tensor values = format == quant::ActivationFormat::Int8
                          ? scaled.round().clamp(-max_code, max_code).to(at::kChar)
                          : scaled.clamp(-max_code, max_code).to(at::kFloat8_e4m3fn);
  return {std::move(values), scale};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_linear_weight_reference(
    const at::Tensor& weight, double threshold_factor, bool per_channel, quant::ScaleMode mode,
    quant::ActivationFormat format, at::ScalarType dtype, bool keep_operand) {
  auto [codes, scale] = ternarize_reference(weight, threshold_factor, per_channel, mode);
  const bool none = format == quant::ActivationFormat::None;
  at::Tensor operand = keep_operand || none ? dequantize(codes, scale, dtype) : at::Tensor();
  at::Tensor codes8 = none ? at::Tensor() : codes.to(eight_bit_dtype(format));
  return {std::move(operand), std::move(codes8), std::move(scale)};
}

at::Tensor quantized_linear_forward_reference(const at::Tensor& input, const at::Tensor& operand,
                                              const at::Tensor& codes, const at::Tensor& scale,
                                              const std::optional<at::Tensor>& bias, quant::ActivationFormat format,
                                              const at::Tensor& input_values, const at::Tensor& input_scale) {
  if (format == quant::ActivationFormat::None) return at::linear(input, operand, bias);
  const auto [values, row_scale] =
      input_values.defined() ? std::tuple(input_values, input_scale) : quantize_activations_reference(input, format);
  // Products of 8-bit values and ternary codes, summed in float32: exact for int8.
  const at::Tensor accumulator = at::matmul(values.to(at::kFloat), codes.to(at::kFloat).t());
  return scale_accumulator(accumulator, row_scale, scale, bias, input.scalar_type());
}

at::Tensor scale_accumulator(const at::Tensor& accumulator, const at::Tensor& input_scale,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             at::ScalarType dtype) {
  at::Tensor output = accumulator.to(at::kFloat);
  if (input_scale.defined()) output.mul_(input_scale);
  output.mul_(weight_scale.to(at::kFloat));
  if (bias.has_value() && bias->defined()) output.add_(bias->to(at::kFloat));
  return output.to(dtype);
}

std::tuple<at::Tensor, at::Tensor> quantize_gradient_reference(const at::Tensor& grad_rows, const at::Tensor& scale) {
  const at::Tensor folded = grad_rows.to(at::kFloat) * scale.to(at::kFloat).reshape({1, -1});
  const at::Tensor tensor_scale = folded.abs().amax().clamp_min(kMinGradientAbsMax).div(kMaxE5M2).reshape({1});
  at::Tensor values = (folded / tensor_scale).clamp(-kMaxE5M2, kMaxE5M2).to(at::kFloat8_e5m2);
  return {std::move(values), tensor_scale};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_reference(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, quant::GradientFormat gradient_format) {
  // The operand is undefined when grad_input is not wanted (8-bit activations).
  const int64_t out_features = grad_output.size(-1);
  const int64_t in_features = input.size(-1);
  const at::Tensor grad_rows = grad_output.reshape({-1, out_features});
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0] && gradient_format == quant::GradientFormat::Float8E5M2) {
    const auto [values, tensor_scale] = quantize_gradient_reference(grad_rows, scale);
    grad_input = (values.to(at::kFloat).mm(operand.sign().to(at::kFloat)) * tensor_scale)
                     .to(grad_output.scalar_type())
                     .view(input.sizes());
  } else if (output_mask[0]) {
    grad_input = grad_output.matmul(operand);
  }
  if (output_mask[1]) {
    // Times the scale in the scale's precision, written in the type both promote to (float32
    // for a float16/bfloat16 operand): one pass that also spares the FP32 master weight of
    // mixed-precision training the cast of its gradient.
    grad_weight = grad_rows.t().mm(input.reshape({-1, in_features})) * scale.unsqueeze(1);
  }
  if (output_mask[2]) grad_bias = grad_rows.sum(0);
  return {std::move(grad_input), std::move(grad_weight), std::move(grad_bias)};
}

}  // namespace bittorch::ops
