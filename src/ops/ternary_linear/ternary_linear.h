#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

namespace bittorch::ops {

/// The parsed settings of a checked ternary_linear call.
struct LinearArgs {
  quant::ScaleMode scale_mode;
  quant::ActivationFormat activation_format;
};

/// check_ternarize_args plus input [*, in_features] and bias [out_features] on one device, in
/// the dtype contract of include/bittorch/ops/ternary_linear.h, and an activation format
/// ("none", "int8" or "float8_e4m3"; 8-bit ones need a float32/float16/bfloat16 input).
LinearArgs check_linear_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, double threshold_factor,
                             c10::string_view scale_mode, c10::string_view activation_format);

}  // namespace bittorch::ops
