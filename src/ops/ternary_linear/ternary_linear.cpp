// bittorch::ternary_linear, its halves and its backward: schemas, typed entries, argument
// checks, and ternary_linear itself, the composition of the halves.

#include "ops/ternary_linear/ternary_linear.h"

#include <bittorch/ops/ternary_linear.h>

#include "ops/common/checks.h"
#include "ops/quantize_activations/quantize_activations.h"
#include "ops/ternarize/ternarize.h"

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // y = x @ (codes * scale)^T + bias, differentiable through the straight-through estimator.
  // With activation_format "int8" or "float8_e4m3", x is first quantized per row to that
  // format (straight-through as well). Dtypes: input, bias and output share one; the weight
  // has it too, or is a float32 master weight with a float16/bfloat16 input. With
  // gradient_format "float8_e5m2" the backward's grad_input product takes the output gradient
  // in FP8 e5m2 (quant::GradientFormat).
  m.def(
      "ternary_linear(Tensor input, Tensor weight, Tensor? bias=None, "
      "float threshold_factor=0.05, bool per_channel=True, str scale_mode=\"max\", "
      "str activation_format=\"none\", str gradient_format=\"none\") -> Tensor");
  // The backward of the straight-through estimator. `operand` is codes * scale in the
  // input's dtype, the matrix grad_output is multiplied with for grad_input.
  m.def(
      "_ternary_linear_backward(Tensor grad_output, Tensor input, Tensor operand, Tensor scale, "
      "bool[3] output_mask, str gradient_format=\"none\") -> (Tensor grad_input, Tensor grad_weight, "
      "Tensor grad_bias)");
  // The forward in two halves, of which ternary_linear is the composition; a layer keeps the
  // first while its weight does not change. The weight's half: `operand` (codes * scale in `dtype`) when keep_operand
  // or the format is "none", `codes` (int8 or float8_e4m3fn) for an 8-bit format, and the scale.
  m.def(
      "_ternary_linear_quantize_weight(Tensor weight, float threshold_factor, bool per_channel, str scale_mode, "
      "str activation_format, ScalarType dtype, bool keep_operand) -> (Tensor operand, Tensor codes, Tensor scale)");
  // y from that quantized weight, differentiable: grad_input from the operand (needed only
  // then and for format "none"), grad_weight for `weight` (the master weight the quantized one
  // came from, which it does not read) by the straight-through estimator, grad_bias. With an
  // 8-bit format, input_values and input_scale may give the input already quantized (by the
  // op that made it, as quantize_activations would): the product reads them, not the input.
  m.def(
      "ternary_linear_quantized(Tensor input, Tensor weight, Tensor? operand, Tensor? codes, Tensor scale, "
      "Tensor? bias=None, str activation_format=\"none\", str gradient_format=\"none\", "
      "Tensor? input_values=None, Tensor? input_scale=None) -> Tensor");
  m.def(
      "_ternary_linear_quantized_forward(Tensor input, Tensor? operand, Tensor? codes, Tensor scale, Tensor? bias, "
      "str activation_format, Tensor? input_values=None, Tensor? input_scale=None) -> Tensor");
}

namespace bittorch::ops {

at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          double threshold_factor, bool per_channel, c10::string_view scale_mode,
                          c10::string_view activation_format, c10::string_view gradient_format) {
  static const auto op = find_op<decltype(ternary_linear)>("bittorch::ternary_linear");
  return op.call(input, weight, bias, threshold_factor, per_channel, scale_mode, activation_format, gradient_format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, c10::string_view gradient_format) {
  static const auto op = find_op<decltype(ternary_linear_backward)>("bittorch::_ternary_linear_backward");
  return op.call(grad_output, input, operand, scale, output_mask, gradient_format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_quantize_weight(const at::Tensor& weight,
                                                                              double threshold_factor, bool per_channel,
                                                                              c10::string_view scale_mode,
                                                                              c10::string_view activation_format,
                                                                              at::ScalarType dtype, bool keep_operand) {
  static const auto op = find_op<decltype(ternary_linear_quantize_weight)>("bittorch::_ternary_linear_quantize_weight");
  return op.call(weight, threshold_factor, per_channel, scale_mode, activation_format, dtype, keep_operand);
}

at::Tensor ternary_linear_quantized(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& operand, const std::optional<at::Tensor>& codes,
                                    const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                    c10::string_view activation_format, c10::string_view gradient_format,
                                    const std::optional<at::Tensor>& input_values,
                                    const std::optional<at::Tensor>& input_scale) {
  static const auto op = find_op<decltype(ternary_linear_quantized)>("bittorch::ternary_linear_quantized");
  return op.call(input, weight, operand, codes, scale, bias, activation_format, gradient_format, input_values,
                 input_scale);
}

at::Tensor ternary_linear_quantized_forward(const at::Tensor& input, const std::optional<at::Tensor>& operand,
                                            const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                            const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                            const std::optional<at::Tensor>& input_values,
                                            const std::optional<at::Tensor>& input_scale) {
  static const auto op =
      find_op<decltype(ternary_linear_quantized_forward)>("bittorch::_ternary_linear_quantized_forward");
  return op.call(input, operand, codes, scale, bias, activation_format, input_values, input_scale);
}

namespace {

// The dtype contract: the weight in the activations' dtype, or a float32 master weight with
// float16/bfloat16 activations (quantized straight into their dtype).
void check_weight_dtype(const char* op, at::ScalarType weight_dtype, at::ScalarType dtype) {
  const bool master_weight = weight_dtype == at::kFloat && at::isReducedFloatingType(dtype);
  TORCH_CHECK(dtype == weight_dtype || master_weight, op,
              ": expected input and weight of the same dtype, or a float32 weight with a float16/bfloat16 input, "
              "but got input ",
              dtype, " and weight ", weight_dtype);
}

// A defined tensor [rows, cols] of `dtype` on `device`, named in the error.
void check_matrix(const char* op, const char* name, const std::optional<at::Tensor>& tensor, int64_t rows, int64_t cols,
                  at::ScalarType dtype, c10::Device device, const char* when) {
  TORCH_CHECK(tensor.has_value() && tensor->defined(), op, ": expected ", name, " ", when);
  TORCH_CHECK(tensor->dim() == 2 && tensor->size(0) == rows && tensor->size(1) == cols, op, ": expected ", name,
              " of shape [", rows, ", ", cols, "], but got ", tensor->sizes());
  TORCH_CHECK(tensor->scalar_type() == dtype && tensor->device() == device, op, ": expected ", name, " of dtype ",
              dtype, " on ", device, ", but got ", tensor->scalar_type(), " on ", tensor->device());
}

// The input given already quantized: both or neither of values (the format's 8-bit dtype, the
// input's shape) and row scales (float32, the input's shape with a last dimension of 1), on
// the input's device, and only with an 8-bit format.
void check_quantized_input(const char* op, const at::Tensor& input, quant::ActivationFormat format,
                           const std::optional<at::Tensor>& values, const std::optional<at::Tensor>& scale) {
  const bool has_values = values.has_value() && values->defined(), has_scale = scale.has_value() && scale->defined();
  TORCH_CHECK(has_values == has_scale, op, ": expected input_values and input_scale together, but got only ",
              has_values ? "input_values" : "input_scale");
  if (!has_values) return;
  TORCH_CHECK(format != quant::ActivationFormat::None, op,
              ": input_values and input_scale need an 8-bit activation format, not none");
  TORCH_CHECK(values->sizes() == input.sizes() && values->scalar_type() == eight_bit_dtype(format) &&
                  values->device() == input.device(),
              op, ": expected input_values of the input's shape ", input.sizes(), ", dtype ", eight_bit_dtype(format),
              " and device ", input.device(), ", but got ", values->sizes(), ", ", values->scalar_type(), " and ",
              values->device());
  const auto scale_shape = row_scale_shape(input);
  TORCH_CHECK(scale->sizes() == at::IntArrayRef(scale_shape) && scale->scalar_type() == at::kFloat &&
                  scale->device() == input.device(),
              op, ": expected input_scale of shape ", at::IntArrayRef(scale_shape), ", dtype float32 and device ",
              input.device(), ", but got ", scale->sizes(), ", ", scale->scalar_type(), " and ", scale->device());
}

}  // namespace

LinearArgs check_quantize_weight_args(const char* op, const at::Tensor& weight, double threshold_factor,
                                      c10::string_view scale_mode, c10::string_view activation_format,
                                      at::ScalarType dtype) {
  const auto mode = check_ternarize_args(op, weight, threshold_factor, scale_mode);
  const auto format = parse_activation_format(activation_format);
  check_weight_dtype(op, weight.scalar_type(), dtype);
  TORCH_CHECK(format == quant::ActivationFormat::None || dtype != at::kDouble, op,
              ": 8-bit activations are quantized from float32, float16 or bfloat16, not ", dtype);
  return {mode, format};
}

quant::ActivationFormat check_quantized_linear_args(const char* op, const at::Tensor& input,
                                                    const std::optional<at::Tensor>& operand,
                                                    const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                                    const std::optional<at::Tensor>& bias,
                                                    c10::string_view activation_format,
                                                    const std::optional<at::Tensor>& input_values,
                                                    const std::optional<at::Tensor>& input_scale) {
  check_input(op, input);
  const auto format = parse_activation_format(activation_format);
  if (format != quant::ActivationFormat::None) check_quantizable_input(op, input);
  TORCH_CHECK(scale.dim() == 1 && scale.size(0) >= 1, op, ": expected scale of shape [out_features] or [1], but got ",
              scale.sizes());
  TORCH_CHECK(scale.scalar_type() == scale_dtype(input.scalar_type()) && scale.device() == input.device(), op,
              ": expected scale of dtype ", scale_dtype(input.scalar_type()), " on ", input.device(), ", but got ",
              scale.scalar_type(), " on ", scale.device());
  const auto& quantized = format == quant::ActivationFormat::None ? operand : codes;
  TORCH_CHECK(quantized.has_value() && quantized->defined() && quantized->dim() == 2, op, ": expected ",
              format == quant::ActivationFormat::None ? "operand" : "codes",
              " [out_features, in_features] for activation format ", activation_format);
  const int64_t out_features = quantized->size(0), in_features = input.size(-1);
  TORCH_CHECK(scale.size(0) == 1 || scale.size(0) == out_features, op, ": expected scale of shape [", out_features,
              "] or [1], but got ", scale.sizes());
  if (format == quant::ActivationFormat::None) {
    check_matrix(op, "operand", operand, out_features, in_features, input.scalar_type(), input.device(),
                 "for activation format none");
  } else {
    check_matrix(op, "codes", codes, out_features, in_features, eight_bit_dtype(format), input.device(),
                 "for an 8-bit activation format");
  }
  if (operand.has_value() && operand->defined() && format != quant::ActivationFormat::None) {
    check_matrix(op, "operand", operand, out_features, in_features, input.scalar_type(), input.device(), "");
  }
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out_features, op, ": expected bias of shape [", out_features,
                "] (out_features), but got ", bias->sizes());
    TORCH_CHECK(bias->device() == input.device() && bias->scalar_type() == input.scalar_type(), op,
                ": expected bias on ", input.device(), " with dtype ", input.scalar_type(), " like input, but got ",
                bias->device(), " and ", bias->scalar_type());
  }
  check_quantized_input(op, input, format, input_values, input_scale);
  return format;
}

quant::GradientFormat check_backward_args(const char* op, const at::Tensor& grad_output,
                                          c10::string_view gradient_format) {
  const auto format = parse_gradient_format(gradient_format);
  TORCH_CHECK(format == quant::GradientFormat::None || grad_output.scalar_type() == at::kFloat ||
                  at::isReducedFloatingType(grad_output.scalar_type()),
              op, ": FP8 gradients are quantized from float32, float16 or bfloat16, not ", grad_output.scalar_type());
  return format;
}

void check_ternary_linear_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               double threshold_factor, c10::string_view scale_mode, c10::string_view activation_format,
                               c10::string_view gradient_format) {
  const char* op = "bittorch::ternary_linear";
  check_ternarize_args(op, weight, threshold_factor, scale_mode);
  check_input(op, input);
  if (parse_activation_format(activation_format) != quant::ActivationFormat::None) check_quantizable_input(op, input);
  parse_gradient_format(gradient_format);
  TORCH_CHECK(input.device() == weight.device(), op,
              ": expected input and weight on the same device, but got input on ", input.device(), " and weight on ",
              weight.device());
  check_weight_dtype(op, weight.scalar_type(), input.scalar_type());
  TORCH_CHECK(input.size(-1) == weight.size(1), op, ": expected input's last dimension to be ",
              "in_features = ", weight.size(1), ", but got input of shape ", input.sizes());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": expected bias of shape [", weight.size(0),
                "] (out_features), but got ", bias->sizes());
    TORCH_CHECK(bias->device() == input.device() && bias->scalar_type() == input.scalar_type(), op,
                ": expected bias on ", input.device(), " with dtype ", input.scalar_type(), " like input, but got ",
                bias->device(), " and ", bias->scalar_type());
  }
}

namespace {

// ternary_linear is its two halves: the weight quantized for the input's dtype (with the
// operand when grad_input will need it), then the product, whose autograd node is the one
// backward. The composition sits above autograd (CompositeImplicitAutograd), so every backend,
// Meta and torch.compile see the halves; under CUDA autocast ternary_linear's Autocast kernel
// casts first.
at::Tensor ternary_linear_composite(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                    c10::string_view scale_mode, c10::string_view activation_format,
                                    c10::string_view gradient_format) {
  check_ternary_linear_args(input, weight, bias, threshold_factor, scale_mode, activation_format, gradient_format);
  const bool keep_operand = at::GradMode::is_enabled() && input.requires_grad();
  auto [operand, codes, scale] = ternary_linear_quantize_weight(weight, threshold_factor, per_channel, scale_mode,
                                                                activation_format, input.scalar_type(), keep_operand);
  const auto optional = [](at::Tensor& t) {
    return t.defined() ? std::optional<at::Tensor>(std::move(t)) : std::nullopt;
  };
  return ternary_linear_quantized(input, weight, optional(operand), optional(codes), scale, bias, activation_format,
                                  gradient_format);
}

at::Tensor ternary_linear_quantized_no_autograd(const at::Tensor& input, const at::Tensor& /*weight*/,
                                                const std::optional<at::Tensor>& operand,
                                                const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                                const std::optional<at::Tensor>& bias,
                                                c10::string_view activation_format, c10::string_view gradient_format,
                                                const std::optional<at::Tensor>& input_values,
                                                const std::optional<at::Tensor>& input_scale) {
  parse_gradient_format(gradient_format);  // refused here as with autograd, though unused
  return ternary_linear_quantized_forward(input, operand, codes, scale, bias, activation_format, input_values,
                                          input_scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CompositeImplicitAutograd, m) {
  m.impl("ternary_linear", &ternary_linear_composite);
}

TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("ternary_linear_quantized", &ternary_linear_quantized_no_autograd);
}

}  // namespace bittorch::ops
