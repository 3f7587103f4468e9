#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace bittorch::ops {

/// An input [*, features] of float32, float16 or bfloat16 with at least one feature and an
/// 8-bit activation format ("int8" or "float8_e4m3"); returns the parsed format.
quant::ActivationFormat check_activation_args(const char* op, const at::Tensor& input, c10::string_view format);

}  // namespace bittorch::ops
