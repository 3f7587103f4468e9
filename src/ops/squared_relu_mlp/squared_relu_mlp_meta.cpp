// bittorch::squared_relu_mlp on the Meta device: shapes and dtypes only.

#include "ops/squared_relu_mlp/squared_relu_mlp.h"

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::squared_relu_mlp";

std::tuple<at::Tensor, at::Tensor> forward_meta(const at::Tensor& input, const at::Tensor& up_weight,
                                                const at::Tensor& down_weight) {
  check_squared_relu_mlp_args(kOp, input, up_weight, down_weight);
  return {at::empty(linear_output_shape(input, down_weight.size(0)), input.options()),
          at::empty(linear_output_shape(input, up_weight.size(0)), input.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_meta(const at::Tensor& grad_output, const at::Tensor& input,
                                                             const at::Tensor& hidden, const at::Tensor& up_weight,
                                                             const at::Tensor& down_weight,
                                                             std::array<bool, 3> output_mask) {
  check_squared_relu_mlp_backward_args(kOp, grad_output, input, hidden, up_weight, down_weight);
  const auto like = [](bool wanted, const at::Tensor& t) {
    return wanted ? at::empty(t.sizes(), t.options()) : at::Tensor();
  };
  return {like(output_mask[0], input), like(output_mask[1], up_weight), like(output_mask[2], down_weight)};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("_squared_relu_mlp_forward", &forward_meta);
  m.impl("_squared_relu_mlp_backward", &backward_meta);
}

}  // namespace bittorch::ops
