// bittorch::squared_relu_mlp's forward on the CPU: the composed path (ATen's products and the
// squared_relu op's CPU kernel), in the operands' dtype. The backward is one composition for
// every device (squared_relu_mlp.cpp).

#include "ops/squared_relu_mlp/squared_relu_mlp.h"

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::squared_relu_mlp";

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& input, const at::Tensor& up_weight,
                                               const at::Tensor& down_weight) {
  check_squared_relu_mlp_args(kOp, input, up_weight, down_weight);
  const at::Tensor hidden = squared_relu_mlp_hidden_composed(input.reshape({-1, input.size(-1)}), up_weight)
                                .view(linear_output_shape(input, up_weight.size(0)));
  return {squared_relu_mlp_output(input, hidden, down_weight), hidden};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("_squared_relu_mlp_forward", &forward_cpu);
}

}  // namespace bittorch::ops
