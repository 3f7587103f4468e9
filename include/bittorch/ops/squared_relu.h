#pragma once

// bittorch::squared_relu: relu(x)^2, the activation of BitNet's MLP, forward and backward each
// in one pass (schema in src/ops/squared_relu/squared_relu.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace bittorch::ops {

/// max(x, 0)^2 elementwise, in x's dtype (float32, float64, float16, bfloat16), with float32
/// arithmetic (float64 for float64). Differentiable: the gradient is grad * 2 * max(x, 0),
/// computed from the output y as grad * 2 * sqrt(y), so that y, which the next layer keeps for
/// its own backward anyway, is the only tensor saved (not x as well).
BITTORCH_API at::Tensor squared_relu(const at::Tensor& input);

/// grad_output * 2 * sqrt(output), in the output's dtype: squared_relu's backward from its
/// output (sqrt(max(x, 0)^2) = max(x, 0)).
BITTORCH_API at::Tensor _squared_relu_backward(const at::Tensor& grad_output, const at::Tensor& output);

/// (output, values, scale): output = squared_relu(input), and (values, scale) =
/// quantize_activations(output, format) ("int8" | "float8_e4m3"), the same bits as the two
/// ops, on CUDA in one pass that reads the input once: the activation feeding an 8-bit
/// product (ternary_linear_quantized's input_values and input_scale). For a float32, float16
/// or bfloat16 input [*, features]. Differentiable in the input through `output` as
/// squared_relu; values and scale are not.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> squared_relu_quantized(const at::Tensor& input,
                                                                                   c10::string_view format);

}  // namespace bittorch::ops
