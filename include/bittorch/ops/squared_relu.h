#pragma once

// bittorch::squared_relu: relu(x)^2, the activation of BitNet's MLP, forward and backward each
// in one pass (schema in src/ops/squared_relu/squared_relu.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

/// max(x, 0)^2 elementwise, in x's dtype (float32, float64, float16, bfloat16), with float32
/// arithmetic (float64 for float64). Differentiable: the gradient is grad * 2 * max(x, 0).
BITTORCH_API at::Tensor squared_relu(const at::Tensor& input);

/// grad_output * 2 * max(input, 0), in the input's dtype: squared_relu's backward.
BITTORCH_API at::Tensor _squared_relu_backward(const at::Tensor& grad_output, const at::Tensor& input);

}  // namespace bittorch::ops
