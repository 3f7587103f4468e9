// Meta implementation of the bittorch:: ops: shapes and dtypes only, no data. Lets
// torch.compile, FakeTensor and shape inference trace the layer.

#include "ops/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_meta(const at::Tensor& weight,
                                                  double threshold_factor, bool per_channel,
                                                  c10::string_view scale_mode) {
  check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  return {at::empty_like(weight),
          at::empty({per_channel ? weight.size(0) : 1},
                    weight.options().dtype(scale_dtype(weight.scalar_type())))};
}

std::tuple<at::Tensor, at::Tensor> quantize_activations_meta(const at::Tensor& input,
                                                             c10::string_view format) {
  const auto parsed = check_activation_args("bittorch::quantize_activations", input, format);
  auto scale_shape = input.sizes().vec();
  scale_shape.back() = 1;
  const auto values_dtype =
      parsed == quant::ActivationFormat::Int8 ? at::kChar : at::kFloat8_e4m3fn;
  return {at::empty(input.sizes(), input.options().dtype(values_dtype)),
          at::empty(scale_shape, input.options().dtype(at::kFloat))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_meta(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, bool keep_operand) {
  const auto args = check_linear_args("bittorch::ternary_linear", input, weight, bias,
                                      threshold_factor, scale_mode, activation_format);
  auto scale = std::get<1>(ternarize_meta(weight, threshold_factor, per_channel, scale_mode));
  const bool has_operand = keep_operand || args.activation_format == quant::ActivationFormat::None;
  return {at::empty(linear_output_shape(input, weight.size(0)), input.options()),
          has_operand ? at::empty(weight.sizes(), weight.options().dtype(input.scalar_type()))
                      : at::Tensor(),
          std::move(scale)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_meta(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& /*operand*/,
    const at::Tensor& scale, std::array<bool, 3> output_mask) {
  const auto grad_weight_dtype = at::promote_types(input.scalar_type(), scale.scalar_type());
  return {output_mask[0] ? at::empty_like(input) : at::Tensor(),
          output_mask[1] ? at::empty({grad_output.size(-1), input.size(-1)},
                                     input.options().dtype(grad_weight_dtype))
                         : at::Tensor(),
          output_mask[2] ? at::empty({grad_output.size(-1)}, grad_output.options()) : at::Tensor()};
}

at::Tensor packed_ternary_linear_meta(const at::Tensor& input, const at::Tensor& packed,
                                      const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                      int64_t in_features, c10::string_view activation_format) {
  check_packed_linear_args("bittorch::packed_ternary_linear", input, packed, scale, bias,
                           in_features, activation_format);
  return at::empty(linear_output_shape(input, packed.size(0)), input.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_meta);
  m.impl("ternarize", &ternarize_meta);
  m.impl("quantize_activations", &quantize_activations_meta);
  m.impl("_ternary_linear_forward", &ternary_linear_forward_meta);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_meta);
}

}  // namespace bittorch::ops
