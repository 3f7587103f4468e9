// Autograd for bittorch::squared_relu_mlp: the forward saves the input, the hidden activation
// and both weights (not the up projection's output: the activation's derivative comes from
// hidden, 2 * sqrt(hidden)); the backward is one op.

#include <bittorch/ops/squared_relu_mlp.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

class SquaredReluMlpFunction : public torch::autograd::Function<SquaredReluMlpFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& up_weight,
                            const at::Tensor& down_weight) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, hidden] = _squared_relu_mlp_forward(input, up_weight, down_weight);
    ctx->save_for_backward({input, hidden, up_weight, down_weight});
    return output;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_input, grad_up_weight, grad_down_weight] =
        _squared_relu_mlp_backward(grad_outputs[0], saved[0], saved[1], saved[2], saved[3],
                                   {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)});
    return {grad_input, grad_up_weight, grad_down_weight};
  }
};

at::Tensor squared_relu_mlp_autograd(const at::Tensor& input, const at::Tensor& up_weight,
                                     const at::Tensor& down_weight) {
  return SquaredReluMlpFunction::apply(input, up_weight, down_weight);
}

// The forward and backward halves are leaves of the graph: not differentiable themselves.
std::tuple<at::Tensor, at::Tensor> forward_autograd(const at::Tensor& input, const at::Tensor& up_weight,
                                                    const at::Tensor& down_weight) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _squared_relu_mlp_forward(input, up_weight, down_weight);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                                                 const at::Tensor& hidden, const at::Tensor& up_weight,
                                                                 const at::Tensor& down_weight,
                                                                 std::array<bool, 3> output_mask) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _squared_relu_mlp_backward(grad_output, input, hidden, up_weight, down_weight, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("squared_relu_mlp", &squared_relu_mlp_autograd);
  m.impl("_squared_relu_mlp_forward", &forward_autograd);
  m.impl("_squared_relu_mlp_backward", &backward_autograd);
}

}  // namespace bittorch::ops
