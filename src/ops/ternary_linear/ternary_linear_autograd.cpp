// Autograd implementation of ternary_linear's halves (ternary_linear itself is their
// composition): the weight's half is not differentiable, and the product's node is the
// straight-through estimator. Its backward is a dispatcher op, so each backend (CPU, CUDA,
// Meta) provides its own and this file stays backend-agnostic.

#include <bittorch/ops/ternary_linear.h>

#include "ops/common/checks.h"
#include "ops/ternary_linear/ternary_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

namespace bittorch::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y from a quantized weight; `weight` only receives grad_weight. Tensors first that may need
// gradients (input, weight, bias: the node's inputs 0, 1 and, with a bias, 2), then the
// quantized weight, which never does.
class TernaryLinearQuantizedFunction : public torch::autograd::Function<TernaryLinearQuantizedFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& /*weight*/,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& operand,
                            const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                            const std::string& activation_format, const std::string& gradient_format,
                            const std::optional<at::Tensor>& input_values,
                            const std::optional<at::Tensor>& input_scale) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    parse_gradient_format(gradient_format);  // refused at the forward, not in the backward
    at::Tensor output = ternary_linear_quantized_forward(input, operand, codes, scale, bias, activation_format,
                                                         input_values, input_scale);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["gradient_format"] = gradient_format;
    // The scale is a constant of the estimator: the quantized operand and the scale are kept,
    // never the master weight, and the operand only where grad_input needs it. With 8-bit
    // activations the backward is the same: straight-through for both quantizers, grad_w from
    // the unquantized input (torchao's BitNet training takes it from the dequantized 8-bit
    // input instead), grad_x from the operand.
    const bool keep_operand = input.requires_grad() && operand.has_value();
    ctx->save_for_backward({input, keep_operand ? *operand : at::Tensor(), scale});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    // An absent bias is no input of the autograd node, so index 2 exists only with a bias.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::array<bool, 3> output_mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                             has_bias && ctx->needs_input_grad(2)};
    TORCH_CHECK(!output_mask[0] || saved[1].defined(),
                "bittorch::ternary_linear_quantized: the input's gradient needs the operand (codes * scale): "
                "quantize the weight with keep_operand");
    auto [grad_input, grad_weight, grad_bias] = ternary_linear_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], output_mask, ctx->saved_data["gradient_format"].toStringRef());
    // operand, codes, scale, activation_format, gradient_format, input_values, input_scale: no
    // gradients (the input's comes through the straight-through estimator).
    return {grad_input,   grad_weight,  grad_bias,    at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor ternary_linear_quantized_autograd(const at::Tensor& input, const at::Tensor& weight,
                                             const std::optional<at::Tensor>& operand,
                                             const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                             const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                             c10::string_view gradient_format,
                                             const std::optional<at::Tensor>& input_values,
                                             const std::optional<at::Tensor>& input_scale) {
  return TernaryLinearQuantizedFunction::apply(input, weight, bias, operand, codes, scale,
                                               std::string(activation_format), std::string(gradient_format),
                                               input_values, input_scale);
}

// Not differentiable: its outputs never require grad, whatever the weight does (the product's
// node gives the weight its gradient).
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_weight_autograd(const at::Tensor& weight,
                                                                        double threshold_factor, bool per_channel,
                                                                        c10::string_view scale_mode,
                                                                        c10::string_view activation_format,
                                                                        at::ScalarType dtype, bool keep_operand) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return ternary_linear_quantize_weight(weight, threshold_factor, per_channel, scale_mode, activation_format, dtype,
                                        keep_operand);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("ternary_linear_quantized", &ternary_linear_quantized_autograd);
  m.impl("_ternary_linear_quantize_weight", &quantize_weight_autograd);
}

}  // namespace bittorch::ops
