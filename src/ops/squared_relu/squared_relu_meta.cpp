#include "ops/quantize_activations/quantize_activations.h"
#include "ops/squared_relu/squared_relu.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::squared_relu";

at::Tensor forward_meta(const at::Tensor& input) {
  check_squared_relu_input(kOp, input);
  return at::empty_like(input, at::MemoryFormat::Contiguous);
}

at::Tensor backward_meta(const at::Tensor& grad_output, const at::Tensor& output) {
  check_squared_relu_backward_args(kOp, grad_output, output);
  return at::empty_like(output, at::MemoryFormat::Contiguous);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantized_meta(const at::Tensor& input, c10::string_view format) {
  const auto parsed = check_squared_relu_quantized_args("bittorch::squared_relu_quantized", input, format);
  auto [values, scale] = empty_quantized_rows(input, parsed);
  return {at::empty_like(input, at::MemoryFormat::Contiguous), std::move(values), std::move(scale)};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("squared_relu", &forward_meta);
  m.impl("_squared_relu_backward", &backward_meta);
  m.impl("squared_relu_quantized", &quantized_meta);
}

}  // namespace bittorch::ops
