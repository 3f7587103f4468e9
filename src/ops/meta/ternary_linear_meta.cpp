// Meta implementation of the bittorch:: ops: shapes and dtypes only, no data. Lets
// torch.compile, FakeTensor and shape inference trace the layer.

#include "ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_meta(const at::Tensor& weight,
                                                  double threshold_factor, bool per_channel,
                                                  c10::string_view scale_mode) {
  check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  return {at::empty_like(weight),
          at::empty({per_channel ? weight.size(0) : 1},
                    weight.options().dtype(scale_dtype(weight.scalar_type())))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_meta(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode) {
  check_linear_args("bittorch::ternary_linear", input, weight, bias, threshold_factor,
                    scale_mode);
  auto scale = std::get<1>(ternarize_meta(weight, threshold_factor, per_channel, scale_mode));
  return {at::empty(linear_output_shape(input, weight.size(0)), input.options()),
          at::empty(weight.sizes(), weight.options().dtype(input.scalar_type())), std::move(scale)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_meta(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& /*scale*/, std::array<bool, 3> output_mask) {
  return {output_mask[0] ? at::empty_like(input) : at::Tensor(),
          output_mask[1] ? at::empty_like(operand) : at::Tensor(),
          output_mask[2] ? at::empty({operand.size(0)}, grad_output.options()) : at::Tensor()};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("ternarize", &ternarize_meta);
  m.impl("_ternary_linear_forward", &ternary_linear_forward_meta);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_meta);
}

}  // namespace bittorch::ops
