#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace bittorch::ops {

/// A floating input of a dtype squared_relu takes.
void check_squared_relu_input(const char* op, const at::Tensor& input);

/// The backward's gradient: of the (forward's) output's shape and dtype, on its device.
void check_squared_relu_backward_args(const char* op, const at::Tensor& grad_output, const at::Tensor& output);

/// squared_relu_quantized's arguments: an input squared_relu takes that can be quantized
/// (float32, float16 or bfloat16, at least one feature) and an 8-bit format, returned parsed.
quant::ActivationFormat check_squared_relu_quantized_args(const char* op, const at::Tensor& input,
                                                          c10::string_view format);

}  // namespace bittorch::ops
