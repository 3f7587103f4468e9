// Autograd for bittorch::linear_cross_entropy: the forward makes the gradients chunk by chunk
// (bittorch::_linear_cross_entropy_forward), the backward scales them by the loss's gradient.
// Not twice differentiable.

#include <bittorch/ops/linear_cross_entropy.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

class LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& target, int64_t ignore_index, int64_t chunk_rows, bool compute_grad) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [loss, grad_input, grad_weight] =
        _linear_cross_entropy_forward(input, weight, target, ignore_index, chunk_rows, compute_grad);
    ctx->save_for_backward({grad_input, grad_weight});
    return loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& grad_loss = grad_outputs[0];
    const auto scaled = [&](const at::Tensor& grad) {
      return grad.defined() ? grad * grad_loss.to(grad.scalar_type()) : at::Tensor();
    };
    return {scaled(saved[0]), scaled(saved[1]), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor linear_cross_entropy_autograd(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                         int64_t ignore_index, int64_t chunk_rows) {
  // Gradients only where a backward can come: not under NoGradGuard (evaluation). Decided
  // here, since a Function's forward runs with gradients off.
  const bool compute_grad = at::GradMode::is_enabled() && (input.requires_grad() || weight.requires_grad());
  return LinearCrossEntropyFunction::apply(input, weight, target, ignore_index, chunk_rows, compute_grad);
}

// The forward with its gradients is a leaf of the graph: its outputs are not differentiable.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_autograd(const at::Tensor& input, const at::Tensor& weight,
                                                                const at::Tensor& target, int64_t ignore_index,
                                                                int64_t chunk_rows, bool compute_grad) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _linear_cross_entropy_forward(input, weight, target, ignore_index, chunk_rows, compute_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("linear_cross_entropy", &linear_cross_entropy_autograd);
  m.impl("_linear_cross_entropy_forward", &forward_autograd);
}

}  // namespace bittorch::ops
