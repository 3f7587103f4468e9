// CPU implementation of the bittorch:: ops: the plain reference, written with ATen ops
// straight from the formulas. The CUDA kernels are checked against it.

#include "ops/cpu/ternary_linear_cpu.h"

#include "ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// The quantizer, on checked arguments.
std::tuple<at::Tensor, at::Tensor> ternarize_reference(const at::Tensor& weight,
                                                       double threshold_factor, bool per_channel,
                                                       quant::ScaleMode mode) {
  // Scales are computed in at least float32 so that the 1e-8 floor is representable.
  const at::Tensor w = weight.to(scale_dtype(weight.scalar_type()));
  const at::Tensor abs_w = w.abs();
  const bool use_max = mode == quant::ScaleMode::Max;
  // Means are taken in double, so that every backend rounds them to the same float.
  const auto mean_abs = [&](auto... dim) { return abs_w.to(at::kDouble).mean(dim...).to(w.scalar_type()); };
  at::Tensor scale = per_channel ? (use_max ? abs_w.amax(1) : mean_abs(1))
                                 : (use_max ? abs_w.max() : mean_abs()).reshape({1});
  scale = scale.clamp_min(1e-8);
  const at::Tensor row_scale = scale.unsqueeze(1);
  const at::Tensor codes = use_max ? w.sign() * (abs_w > row_scale * threshold_factor)
                                   : (w / row_scale).round().clamp(-1, 1);
  return {codes.to(weight.scalar_type()), scale};
}

std::tuple<at::Tensor, at::Tensor> ternarize_cpu(const at::Tensor& weight,
                                                 double threshold_factor, bool per_channel,
                                                 c10::string_view scale_mode) {
  const auto mode =
      check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  return ternarize_reference(weight, threshold_factor, per_channel, mode);
}

// codes * scale[:, None] in `dtype`.
at::Tensor dequantize(const at::Tensor& codes, const at::Tensor& scale, at::ScalarType dtype) {
  return (codes.to(scale.scalar_type()) * scale.unsqueeze(1)).to(dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_cpu(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode) {
  const auto mode = check_linear_args("bittorch::ternary_linear", input, weight, bias,
                                      threshold_factor, scale_mode);
  auto [codes, scale] = ternarize_reference(weight, threshold_factor, per_channel, mode);
  // The backward needs the operand, not the codes: keep that.
  at::Tensor operand = dequantize(codes, scale, input.scalar_type());
  at::Tensor output = at::linear(input, operand, bias);
  return {std::move(output), std::move(operand), std::move(scale)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_reference(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask) {
  const int64_t out_features = operand.size(0);
  const int64_t in_features = operand.size(1);
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = grad_output.matmul(operand);
  const at::Tensor grad_rows = grad_output.reshape({-1, out_features});
  if (output_mask[1]) {
    grad_weight = grad_rows.t().mm(input.reshape({-1, in_features}));
    grad_weight.mul_(scale.unsqueeze(1));  // in the scale's precision, rounded once
  }
  if (output_mask[2]) grad_bias = grad_rows.sum(0);
  return {std::move(grad_input), std::move(grad_weight), std::move(grad_bias)};
}

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("ternarize", &ternarize_cpu);
  m.impl("_ternary_linear_forward", &ternary_linear_forward_cpu);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_reference);
}

}  // namespace bittorch::ops
