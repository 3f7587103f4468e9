// Autograd for bittorch::add_rms_norm: the forward saves sum, weight and the reciprocal RMS;
// the backward takes the gradients of both outputs (output, and sum as it goes on in the
// residual stream) and gives input and residual the same gradient, each in its own dtype.

#include <bittorch/ops/add_rms_norm.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

class AddRmsNormFunction : public torch::autograd::Function<AddRmsNormFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                                                const at::Tensor& residual, const at::Tensor& weight, double eps,
                                                std::optional<at::ScalarType> output_dtype) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, sum, rstd] = _add_rms_norm_forward(input, residual, weight, eps, output_dtype);
    ctx->save_for_backward({sum, weight, rstd});
    ctx->saved_data["input_dtype"] = static_cast<int64_t>(input.scalar_type());
    ctx->saved_data["residual_dtype"] = static_cast<int64_t>(residual.scalar_type());
    return {output, sum};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& sum = saved[0];
    // An unused output's gradient arrives undefined.
    const auto grad_output = grad_outputs[0].defined() ? grad_outputs[0] : at::zeros_like(sum);
    const bool wants_inputs = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    const auto dtype_of = [&](const char* key) { return static_cast<at::ScalarType>(ctx->saved_data[key].toInt()); };
    // An operand narrower than the sum (the branch under autocast) has its gradient written
    // in its dtype by the backward's own pass.
    std::optional<at::ScalarType> narrow;
    for (const char* key : {"input_dtype", "residual_dtype"}) {
      if (!narrow && dtype_of(key) != sum.scalar_type()) narrow = dtype_of(key);
    }
    auto [grad_sum, grad_weight, grad_sum_narrow] = _add_rms_norm_backward(
        grad_output, grad_outputs[1], sum, saved[1], saved[2], {wants_inputs, ctx->needs_input_grad(2)}, narrow);
    const auto as = [&](const char* key) {
      if (!grad_sum.defined()) return at::Tensor();
      return dtype_of(key) == narrow ? grad_sum_narrow : grad_sum.to(dtype_of(key));
    };
    return {as("input_dtype"), as("residual_dtype"), grad_weight, at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> add_rms_norm_autograd(const at::Tensor& input, const at::Tensor& residual,
                                                         const at::Tensor& weight, double eps,
                                                         std::optional<at::ScalarType> output_dtype) {
  const auto outputs = AddRmsNormFunction::apply(input, residual, weight, eps, output_dtype);
  return {outputs[0], outputs[1]};
}

// The forward and backward halves are leaves of the graph: not differentiable themselves.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_autograd(const at::Tensor& input, const at::Tensor& residual,
                                                                const at::Tensor& weight, double eps,
                                                                std::optional<at::ScalarType> output_dtype) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _add_rms_norm_forward(input, residual, weight, eps, output_dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_autograd(const at::Tensor& grad_output,
                                                                 const std::optional<at::Tensor>& grad_sum_in,
                                                                 const at::Tensor& sum, const at::Tensor& weight,
                                                                 const at::Tensor& rstd,
                                                                 std::array<bool, 2> output_mask,
                                                                 std::optional<at::ScalarType> narrow_dtype) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _add_rms_norm_backward(grad_output, grad_sum_in, sum, weight, rstd, output_mask, narrow_dtype);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("add_rms_norm", &add_rms_norm_autograd);
  m.impl("_add_rms_norm_forward", &forward_autograd);
  m.impl("_add_rms_norm_backward", &backward_autograd);
}

}  // namespace bittorch::ops
