#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace bittorch::ops {

/// An input [*, features] of float32, float16 or bfloat16 with at least one feature and an
/// 8-bit activation format ("int8" or "float8_e4m3"); returns the parsed format.
quant::ActivationFormat check_activation_args(const char* op, const at::Tensor& input, c10::string_view format);

/// The shape of an input's row scales: the input's with the last dimension 1.
std::vector<int64_t> row_scale_shape(const at::Tensor& input);

/// Uninitialized (values, scale) for `input` quantized per row to an 8-bit `format`: values of
/// the format's dtype in the input's shape, float32 scales of that shape with the last
/// dimension 1, on the input's device (Meta included).
std::tuple<at::Tensor, at::Tensor> empty_quantized_rows(const at::Tensor& input, quant::ActivationFormat format);

}  // namespace bittorch::ops
