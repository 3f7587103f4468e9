// CPU implementation of ternary_linear's forward and backward: the ATen reference.

#include "ops/reference/reference.h"
#include "ops/ternary_linear/ternary_linear.h"

#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_cpu(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, double threshold_factor,
    bool per_channel, c10::string_view scale_mode, c10::string_view activation_format, bool keep_operand) {
  const auto args = check_linear_args("bittorch::ternary_linear", input, weight, bias, threshold_factor, scale_mode,
                                      activation_format);
  return ternary_linear_forward_reference(input, weight, bias, threshold_factor, per_channel, args.scale_mode,
                                          args.activation_format, keep_operand);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("_ternary_linear_forward", &ternary_linear_forward_cpu);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_reference);
}

}  // namespace bittorch::ops
