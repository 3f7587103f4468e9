#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace bittorch::ops {

void check_floating(const char* op, const char* name, const at::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), op, ": expected ", name, " to be a tensor, but got an undefined one");
  TORCH_CHECK(at::isFloatingType(tensor.scalar_type()), op, ": expected ", name,
              " to be floating point (float32, float64, float16 or bfloat16), but got ", tensor.scalar_type());
}

void check_input(const char* op, const at::Tensor& input) {
  check_floating(op, "input", input);
  TORCH_CHECK(input.dim() >= 1, op, ": expected input of shape [*, in_features], but got a 0-D tensor");
}

void check_quantizable_input(const char* op, const at::Tensor& input) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": 8-bit activations need a float32, float16 or bfloat16 input, but got ", dtype);
}

quant::ActivationFormat parse_activation_format(c10::string_view format) {
  return quant::activation_format_from_string(std::string_view(format.data(), format.size()));
}

quant::GradientFormat parse_gradient_format(c10::string_view format) {
  return quant::gradient_format_from_string(std::string_view(format.data(), format.size()));
}

at::ScalarType scale_dtype(at::ScalarType weight_dtype) {
  return at::isReducedFloatingType(weight_dtype) ? at::kFloat : weight_dtype;
}

at::ScalarType eight_bit_dtype(quant::ActivationFormat format) {
  TORCH_INTERNAL_ASSERT(format != quant::ActivationFormat::None);
  return format == quant::ActivationFormat::Int8 ? at::kChar : at::kFloat8_e4m3fn;
}

int64_t linear_rows(const at::Tensor& input) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < input.dim(); ++d) rows *= input.size(d);
  return rows;
}

std::vector<int64_t> linear_output_shape(const at::Tensor& input, int64_t out_features) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = out_features;
  return shape;
}

}  // namespace bittorch::ops
