// CPU implementation of ternary_linear's halves and backward: the ATen reference.

#include "ops/reference/reference.h"
#include "ops/ternary_linear/ternary_linear.h"

#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_weight_cpu(const at::Tensor& weight, double threshold_factor,
                                                                   bool per_channel, c10::string_view scale_mode,
                                                                   c10::string_view activation_format,
                                                                   at::ScalarType dtype, bool keep_operand) {
  const auto args = check_quantize_weight_args("bittorch::ternary_linear_quantize_weight", weight, threshold_factor,
                                               scale_mode, activation_format, dtype);
  return quantize_linear_weight_reference(weight, threshold_factor, per_channel, args.scale_mode,
                                          args.activation_format, dtype, keep_operand);
}

at::Tensor quantized_forward_cpu(const at::Tensor& input, const std::optional<at::Tensor>& operand,
                                 const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                 const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                 const std::optional<at::Tensor>& input_values,
                                 const std::optional<at::Tensor>& input_scale) {
  const auto format = check_quantized_linear_args("bittorch::ternary_linear_quantized", input, operand, codes, scale,
                                                  bias, activation_format, input_values, input_scale);
  return quantized_linear_forward_reference(input, operand.value_or(at::Tensor()), codes.value_or(at::Tensor()), scale,
                                            bias, format, input_values.value_or(at::Tensor()),
                                            input_scale.value_or(at::Tensor()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, c10::string_view gradient_format) {
  const auto format = check_backward_args("bittorch::ternary_linear", grad_output, gradient_format);
  return ternary_linear_backward_reference(grad_output, input, operand, scale, output_mask, format);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("_ternary_linear_backward", &ternary_linear_backward_cpu);
  m.impl("_ternary_linear_quantize_weight", &quantize_weight_cpu);
  m.impl("_ternary_linear_quantized_forward", &quantized_forward_cpu);
}

}  // namespace bittorch::ops
