// Autograd for bittorch::squared_relu: the output saved (the input is not kept), its backward
// one op.

#include <bittorch/ops/squared_relu.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

class SquaredReluFunction : public torch::autograd::Function<SquaredReluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto output = squared_relu(input);
    ctx->save_for_backward({output});
    return output;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    return {_squared_relu_backward(grad_outputs[0], ctx->get_saved_variables()[0])};
  }
};

at::Tensor squared_relu_autograd(const at::Tensor& input) {
  return SquaredReluFunction::apply(input);
}

at::Tensor backward_autograd(const at::Tensor& grad_output, const at::Tensor& output) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _squared_relu_backward(grad_output, output);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("squared_relu", &squared_relu_autograd);
  m.impl("_squared_relu_backward", &backward_autograd);
}

}  // namespace bittorch::ops
