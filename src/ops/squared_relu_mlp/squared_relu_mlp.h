#pragma once

// squared_relu_mlp's argument checks and the composed forward's pieces every backend shares
// (the CPU's whole forward, and CUDA's where the epilogue product does not apply).

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

/// input [*, features], up_weight [hidden, features], down_weight [out, hidden]: one floating
/// dtype the op takes, one device.
void check_squared_relu_mlp_args(const char* op, const at::Tensor& input, const at::Tensor& up_weight,
                                 const at::Tensor& down_weight);

/// The forward's arguments, hidden [*, hidden] and grad_output [*, out] of their dtype.
void check_squared_relu_mlp_backward_args(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                                          const at::Tensor& hidden, const at::Tensor& up_weight,
                                          const at::Tensor& down_weight);

/// hidden @ down_weight^T, shaped as the output.
at::Tensor squared_relu_mlp_output(const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& down_weight);

/// hidden = ops::squared_relu(input @ up_weight^T), as rows [M, hidden].
at::Tensor squared_relu_mlp_hidden_composed(const at::Tensor& input_rows, const at::Tensor& up_weight);

}  // namespace bittorch::ops
