// bittorch::squared_relu_mlp's forward on the Meta device: shapes and dtypes only (the backward
// is a composition, squared_relu_mlp.cpp).

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

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("_squared_relu_mlp_forward", &forward_meta);
}

}  // namespace bittorch::ops
