// Autograd implementation of bittorch::ternary_linear. The forward and backward of the
// straight-through estimator are dispatcher ops themselves, so each backend (CPU, CUDA,
// Meta) provides its own and this file stays backend-agnostic.

#include <bittorch/ops/ternary_linear.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

namespace bittorch::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class TernaryLinearFunction : public torch::autograd::Function<TernaryLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                            const std::string& scale_mode, const std::string& activation_format, bool keep_operand) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, operand, scale] = ternary_linear_forward(input, weight, bias, threshold_factor, per_channel,
                                                           scale_mode, activation_format, keep_operand);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    // The scale is a constant of the estimator (detached): the quantized operand and the
    // scale are kept, never the master weight. With 8-bit activations the backward is the
    // same: straight-through for both quantizers, grad_w from the unquantized input (torchao's
    // BitNet training takes it from the dequantized 8-bit input instead), grad_x from the
    // operand (kept only if needed).
    ctx->save_for_backward({input, operand, scale});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    // An absent bias is no input of the autograd node, so index 2 exists only with a bias.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::array<bool, 3> output_mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                             has_bias && ctx->needs_input_grad(2)};
    auto [grad_input, grad_weight, grad_bias] =
        ternary_linear_backward(grad_outputs[0], saved[0], saved[1], saved[2], output_mask);
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor ternary_linear_autograd(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                   c10::string_view scale_mode, c10::string_view activation_format) {
  // Only grad_input needs the operand; inside forward, grad mode is already off.
  const bool keep_operand = at::GradMode::is_enabled() && input.requires_grad();
  return TernaryLinearFunction::apply(input, weight, bias, threshold_factor, per_channel, std::string(scale_mode),
                                      std::string(activation_format), keep_operand);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("ternary_linear", &ternary_linear_autograd);
}

}  // namespace bittorch::ops
