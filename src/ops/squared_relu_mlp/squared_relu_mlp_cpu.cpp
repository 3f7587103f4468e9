// bittorch::squared_relu_mlp on the CPU: the composed path (ATen's products and the
// squared_relu op's CPU kernels), in the operands' dtype.

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

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                            const at::Tensor& hidden, const at::Tensor& up_weight,
                                                            const at::Tensor& down_weight,
                                                            std::array<bool, 3> output_mask) {
  check_squared_relu_mlp_backward_args(kOp, grad_output, input, hidden, up_weight, down_weight);
  const at::Tensor grad_rows = grad_output.reshape({-1, grad_output.size(-1)});
  const at::Tensor hidden_rows = hidden.reshape({-1, hidden.size(-1)});
  const at::Tensor grad_hidden = output_mask[0] || output_mask[1]
                                     ? squared_relu_mlp_grad_hidden_composed(grad_rows, hidden_rows, down_weight)
                                     : at::Tensor();
  return squared_relu_mlp_backward_from(grad_rows, input, hidden_rows, grad_hidden, up_weight, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("_squared_relu_mlp_forward", &forward_cpu);
  m.impl("_squared_relu_mlp_backward", &backward_cpu);
}

}  // namespace bittorch::ops
