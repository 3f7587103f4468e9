#include <bittorch/ops.h>

#include <ATen/core/dispatch/Dispatcher.h>

namespace bittorch::ops {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                             bool per_channel, c10::string_view scale_mode) {
  static const auto op =
      find_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, bool,
                                                 c10::string_view)>("bittorch::ternarize");
  return op.call(weight, threshold_factor, per_channel, scale_mode);
}

std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& input,
                                                        c10::string_view format) {
  static const auto op =
      find_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::string_view)>(
          "bittorch::quantize_activations");
  return op.call(input, format);
}

at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, double threshold_factor,
                          bool per_channel, c10::string_view scale_mode,
                          c10::string_view activation_format) {
  static const auto op =
      find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                         double, bool, c10::string_view, c10::string_view)>(
          "bittorch::ternary_linear");
  return op.call(input, weight, bias, threshold_factor, per_channel, scale_mode,
                 activation_format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, bool keep_operand) {
  static const auto op =
      find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
          const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, bool,
          c10::string_view, c10::string_view, bool)>("bittorch::_ternary_linear_forward");
  return op.call(input, weight, bias, threshold_factor, per_channel, scale_mode,
                 activation_format, keep_operand);
}

at::Tensor packed_ternary_linear(const at::Tensor& input, const at::Tensor& packed,
                                 const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                 int64_t in_features, c10::string_view activation_format) {
  static const auto op =
      find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const std::optional<at::Tensor>&, int64_t, c10::string_view)>(
          "bittorch::packed_ternary_linear");
  return op.call(input, packed, scale, bias, in_features, activation_format);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask) {
  static const auto op =
      find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
          const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
          std::array<bool, 3>)>("bittorch::_ternary_linear_backward");
  return op.call(grad_output, input, operand, scale, output_mask);
}

}  // namespace bittorch::ops
