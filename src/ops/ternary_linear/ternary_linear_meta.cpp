// Meta implementation of ternary_linear's halves and backward: shapes and dtypes only, for
// torch.compile, FakeTensor and shape inference.

#include "ops/common/checks.h"
#include "ops/ternarize/ternarize.h"
#include "ops/ternary_linear/ternary_linear.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_meta(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& /*operand*/, const at::Tensor& scale,
    std::array<bool, 3> output_mask, c10::string_view gradient_format) {
  check_backward_args("bittorch::ternary_linear", grad_output, gradient_format);
  const auto grad_weight_dtype = at::promote_types(input.scalar_type(), scale.scalar_type());
  return {output_mask[0] ? at::empty_like(input) : at::Tensor(),
          output_mask[1] ? at::empty({grad_output.size(-1), input.size(-1)}, input.options().dtype(grad_weight_dtype))
                         : at::Tensor(),
          output_mask[2] ? at::empty({grad_output.size(-1)}, grad_output.options()) : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_weight_meta(const at::Tensor& weight, double threshold_factor,
                                                                    bool per_channel, c10::string_view scale_mode,
                                                                    c10::string_view activation_format,
                                                                    at::ScalarType dtype, bool keep_operand) {
  const auto args = check_quantize_weight_args("bittorch::ternary_linear_quantize_weight", weight, threshold_factor,
                                               scale_mode, activation_format, dtype);
  const bool none = args.activation_format == quant::ActivationFormat::None;
  return {
      keep_operand || none ? at::empty(weight.sizes(), weight.options().dtype(dtype)) : at::Tensor(),
      none ? at::Tensor() : at::empty(weight.sizes(), weight.options().dtype(eight_bit_dtype(args.activation_format))),
      empty_scale(weight, per_channel)};
}

at::Tensor quantized_forward_meta(const at::Tensor& input, const std::optional<at::Tensor>& operand,
                                  const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                  const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                  const std::optional<at::Tensor>& input_values,
                                  const std::optional<at::Tensor>& input_scale) {
  const auto format = check_quantized_linear_args("bittorch::ternary_linear_quantized", input, operand, codes, scale,
                                                  bias, activation_format, input_values, input_scale);
  const int64_t out_features = (format == quant::ActivationFormat::None ? *operand : *codes).size(0);
  return at::empty(linear_output_shape(input, out_features), input.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("_ternary_linear_backward", &ternary_linear_backward_meta);
  m.impl("_ternary_linear_quantize_weight", &quantize_weight_meta);
  m.impl("_ternary_linear_quantized_forward", &quantized_forward_meta);
}

}  // namespace bittorch::ops
