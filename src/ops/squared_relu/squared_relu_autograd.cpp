// Autograd for bittorch::squared_relu: the output saved (the input is not kept), its backward
// one op.

#include <bittorch/ops/squared_relu.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

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

// The same node with the quantized output beside it (not differentiable).
class SquaredReluQuantizedFunction : public torch::autograd::Function<SquaredReluQuantizedFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                                                const std::string& format) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, values, scale] = squared_relu_quantized(input, format);
    ctx->save_for_backward({output});
    ctx->mark_non_differentiable({values, scale});
    // No zeros for the 8-bit outputs' gradients, which are never read (nor for an output
    // without a gradient: then the input has none).
    ctx->set_materialize_grads(false);
    return {output, values, scale};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    if (!grad_outputs[0].defined()) return {at::Tensor(), at::Tensor()};
    return {_squared_relu_backward(grad_outputs[0], ctx->get_saved_variables()[0]), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantized_autograd(const at::Tensor& input, c10::string_view format) {
  auto outputs = SquaredReluQuantizedFunction::apply(input, std::string(format));
  return {outputs[0], outputs[1], outputs[2]};
}

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
  m.impl("squared_relu_quantized", &quantized_autograd);
}

}  // namespace bittorch::ops
