// Autograd implementation of bittorch::ternary_linear. The forward and backward of the
// straight-through estimator are dispatcher ops themselves, so each backend (CPU, CUDA,
// Meta) provides its own and this file stays backend-agnostic.

#include <bittorch/ops/ternary_linear.h>

#include "ops/common/checks.h"
#include "ops/ternary_linear/ternary_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

namespace bittorch::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The estimator's gradients from what a forward saved, (input, operand, scale): grad_input,
// grad_weight and grad_bias for the node's inputs 0, 1 and (with a bias) 2, then undefined
// gradients for the `other_arguments` that follow.
variable_list straight_through_backward(AutogradContext* ctx, const at::Tensor& grad_output, size_t other_arguments) {
  const auto saved = ctx->get_saved_variables();
  // An absent bias is no input of the autograd node, so index 2 exists only with a bias.
  const bool has_bias = ctx->saved_data["has_bias"].toBool();
  const std::array<bool, 3> output_mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                           has_bias && ctx->needs_input_grad(2)};
  TORCH_CHECK(!output_mask[0] || saved[1].defined(),
              "bittorch::ternary_linear_quantized: the input's gradient needs the operand (codes * scale): "
              "quantize the weight with keep_operand");
  auto [grad_input, grad_weight, grad_bias] = ternary_linear_backward(
      grad_output, saved[0], saved[1], saved[2], output_mask, ctx->saved_data["gradient_format"].toStringRef());
  variable_list grads = {grad_input, grad_weight, grad_bias};
  grads.resize(3 + other_arguments);
  return grads;
}

class TernaryLinearFunction : public torch::autograd::Function<TernaryLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                            const std::string& scale_mode, const std::string& activation_format,
                            const std::string& gradient_format, bool keep_operand) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    parse_gradient_format(gradient_format);  // refused at the forward, not in the backward
    auto [output, operand, scale] = ternary_linear_forward(input, weight, bias, threshold_factor, per_channel,
                                                           scale_mode, activation_format, keep_operand);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["gradient_format"] = gradient_format;
    // The scale is a constant of the estimator (detached): the quantized operand and the
    // scale are kept, never the master weight. With 8-bit activations the backward is the
    // same: straight-through for both quantizers, grad_w from the unquantized input (torchao's
    // BitNet training takes it from the dequantized 8-bit input instead), grad_x from the
    // operand (kept only if needed).
    ctx->save_for_backward({input, operand, scale});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // threshold_factor, per_channel, scale_mode, activation_format, gradient_format, keep_operand.
    return straight_through_backward(ctx, grad_outputs[0], 6);
  }
};

at::Tensor ternary_linear_autograd(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                   c10::string_view scale_mode, c10::string_view activation_format,
                                   c10::string_view gradient_format) {
  // Only grad_input needs the operand; inside forward, grad mode is already off.
  const bool keep_operand = at::GradMode::is_enabled() && input.requires_grad();
  return TernaryLinearFunction::apply(input, weight, bias, threshold_factor, per_channel, std::string(scale_mode),
                                      std::string(activation_format), std::string(gradient_format), keep_operand);
}

// The same estimator from a weight quantized beforehand: `weight` only receives grad_weight.
// Tensors first that may need gradients (input, weight, bias: the node's inputs 0, 1 and,
// with a bias, 2), then the quantized weight, which never does.
class TernaryLinearQuantizedFunction : public torch::autograd::Function<TernaryLinearQuantizedFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& operand,
                            const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                            const std::string& activation_format, const std::string& gradient_format) {
    static_cast<void>(weight);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    parse_gradient_format(gradient_format);
    at::Tensor output = ternary_linear_quantized_forward(input, operand, codes, scale, bias, activation_format);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["gradient_format"] = gradient_format;
    ctx->save_for_backward({input, operand.value_or(at::Tensor()), scale});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // operand, codes, scale, activation_format, gradient_format.
    return straight_through_backward(ctx, grad_outputs[0], 5);
  }
};

at::Tensor ternary_linear_quantized_autograd(const at::Tensor& input, const at::Tensor& weight,
                                             const std::optional<at::Tensor>& operand,
                                             const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                             const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                             c10::string_view gradient_format) {
  return TernaryLinearQuantizedFunction::apply(input, weight, bias, operand, codes, scale,
                                               std::string(activation_format), std::string(gradient_format));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("ternary_linear", &ternary_linear_autograd);
  m.impl("ternary_linear_quantized", &ternary_linear_quantized_autograd);
}

}  // namespace bittorch::ops
