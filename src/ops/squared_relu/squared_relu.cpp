// bittorch::squared_relu: schema, typed entries and argument checks.

#include "ops/squared_relu/squared_relu.h"

#include <bittorch/ops/squared_relu.h>

#include "ops/common/checks.h"
#include "ops/quantize_activations/quantize_activations.h"

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  m.def("squared_relu(Tensor input) -> Tensor");
  m.def("_squared_relu_backward(Tensor grad_output, Tensor output) -> Tensor");
  // squared_relu's output and that output quantized per row to an 8-bit format as
  // quantize_activations does: on CUDA in one pass, the input of the next 8-bit product.
  m.def("squared_relu_quantized(Tensor input, str format) -> (Tensor output, Tensor values, Tensor scale)");
}

namespace bittorch::ops {

at::Tensor squared_relu(const at::Tensor& input) {
  static const auto op = find_op<decltype(squared_relu)>("bittorch::squared_relu");
  return op.call(input);
}

at::Tensor _squared_relu_backward(const at::Tensor& grad_output, const at::Tensor& output) {
  static const auto op = find_op<decltype(_squared_relu_backward)>("bittorch::_squared_relu_backward");
  return op.call(grad_output, output);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> squared_relu_quantized(const at::Tensor& input,
                                                                      c10::string_view format) {
  static const auto op = find_op<decltype(squared_relu_quantized)>("bittorch::squared_relu_quantized");
  return op.call(input, format);
}

void check_squared_relu_input(const char* op, const at::Tensor& input) {
  check_floating(op, "input", input);
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": expected a float32, float64, float16 or bfloat16 input, but got ", dtype);
}

void check_squared_relu_backward_args(const char* op, const at::Tensor& grad_output, const at::Tensor& output) {
  check_squared_relu_input(op, output);
  TORCH_CHECK(grad_output.defined() && grad_output.sizes() == output.sizes() &&
                  grad_output.scalar_type() == output.scalar_type() && grad_output.device() == output.device(),
              op, ": expected grad_output of the output's shape ", output.sizes(), ", dtype ", output.scalar_type(),
              " and device ", output.device());
}

quant::ActivationFormat check_squared_relu_quantized_args(const char* op, const at::Tensor& input,
                                                          c10::string_view format) {
  check_squared_relu_input(op, input);
  return check_activation_args(op, input, format);
}

}  // namespace bittorch::ops
