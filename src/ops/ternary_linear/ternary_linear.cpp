// bittorch::ternary_linear and its private forward and backward ops: schemas, typed entries,
// argument checks, and the op's definition below autograd.

#include "ops/ternary_linear/ternary_linear.h"

#include <bittorch/ops/ternary_linear.h>

#include "ops/common/checks.h"
#include "ops/ternarize/ternarize.h"

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // y = x @ (codes * scale)^T + bias, differentiable through the straight-through estimator.
  // With activation_format "int8" or "float8_e4m3", x is first quantized per row to that
  // format (straight-through as well). Dtypes: input, bias and output share one; the weight
  // has it too, or is a float32 master weight with a float16/bfloat16 input.
  m.def(
      "ternary_linear(Tensor input, Tensor weight, Tensor? bias=None, "
      "float threshold_factor=0.05, bool per_channel=True, str scale_mode=\"max\", "
      "str activation_format=\"none\") -> Tensor");
  // The pieces the autograd implementation is made of. `operand` is codes * scale in the
  // input's dtype, the matrix the backward multiplies grad_output with for grad_input: it is
  // returned when keep_operand is set, and undefined otherwise (the forward itself may not
  // need it: 8-bit activations, or few rows on CUDA).
  m.def(
      "_ternary_linear_forward(Tensor input, Tensor weight, Tensor? bias, "
      "float threshold_factor, bool per_channel, str scale_mode, str activation_format, "
      "bool keep_operand) -> (Tensor output, Tensor operand, Tensor scale)");
  m.def(
      "_ternary_linear_backward(Tensor grad_output, Tensor input, Tensor operand, Tensor scale, "
      "bool[3] output_mask) -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
}

namespace bittorch::ops {

at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          double threshold_factor, bool per_channel, c10::string_view scale_mode,
                          c10::string_view activation_format) {
  static const auto op =
      find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, bool,
                         c10::string_view, c10::string_view)>("bittorch::ternary_linear");
  return op.call(input, weight, bias, threshold_factor, per_channel, scale_mode, activation_format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, double threshold_factor,
    bool per_channel, c10::string_view scale_mode, c10::string_view activation_format, bool keep_operand) {
  static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, bool, c10::string_view,
      c10::string_view, bool)>("bittorch::_ternary_linear_forward");
  return op.call(input, weight, bias, threshold_factor, per_channel, scale_mode, activation_format, keep_operand);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(const at::Tensor& grad_output,
                                                                       const at::Tensor& input,
                                                                       const at::Tensor& operand,
                                                                       const at::Tensor& scale,
                                                                       std::array<bool, 3> output_mask) {
  static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, std::array<bool, 3>)>(
      "bittorch::_ternary_linear_backward");
  return op.call(grad_output, input, operand, scale, output_mask);
}

LinearArgs check_linear_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, double threshold_factor,
                             c10::string_view scale_mode, c10::string_view activation_format) {
  const auto mode = check_ternarize_args(op, weight, threshold_factor, scale_mode);
  check_input(op, input);
  const auto format = parse_activation_format(activation_format);
  if (format != quant::ActivationFormat::None) check_quantizable_input(op, input);
  TORCH_CHECK(input.device() == weight.device(), op,
              ": expected input and weight on the same device, but got input on ", input.device(), " and weight on ",
              weight.device());
  // A float32 master weight with a float16/bfloat16 input is quantized straight into the
  // input's dtype (mixed-precision training without a cast pass over the weight).
  const bool master_weight = weight.scalar_type() == at::kFloat && at::isReducedFloatingType(input.scalar_type());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type() || master_weight, op,
              ": expected input and weight of the same dtype, or a float32 weight with a float16/bfloat16 input, "
              "but got input ",
              input.scalar_type(), " and weight ", weight.scalar_type());
  TORCH_CHECK(input.size(-1) == weight.size(1), op, ": expected input's last dimension to be ",
              "in_features = ", weight.size(1), ", but got input of shape ", input.sizes());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": expected bias of shape [", weight.size(0),
                "] (out_features), but got ", bias->sizes());
    TORCH_CHECK(bias->device() == input.device() && bias->scalar_type() == input.scalar_type(), op,
                ": expected bias on ", input.device(), " with dtype ", input.scalar_type(), " like input, but got ",
                bias->device(), " and ", bias->scalar_type());
  }
  return {mode, format};
}

namespace {

// Below autograd (inference mode, or a backend asked directly), ternary_linear is the output
// of the backend's forward.
at::Tensor ternary_linear_no_autograd(const at::Tensor& input, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                      c10::string_view scale_mode, c10::string_view activation_format) {
  return std::get<0>(ternary_linear_forward(input, weight, bias, threshold_factor, per_channel, scale_mode,
                                            activation_format, /*keep_operand=*/false));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("ternary_linear", &ternary_linear_no_autograd);
}

}  // namespace bittorch::ops
