#pragma once

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

/// A floating input of a dtype squared_relu takes.
void check_squared_relu_input(const char* op, const at::Tensor& input);

/// The backward's gradient: of the (forward's) output's shape and dtype, on its device.
void check_squared_relu_backward_args(const char* op, const at::Tensor& grad_output, const at::Tensor& output);

}  // namespace bittorch::ops
