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

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("squared_relu", &forward_meta);
  m.impl("_squared_relu_backward", &backward_meta);
}

}  // namespace bittorch::ops
