#pragma once

// bittorch::add_rms_norm_packed_linear: a residual add, the RMSNorm of its result and a packed
// ternary projection of the norm's output in one op: what a decoder block runs before each of
// its attention and MLP (schema in
// src/ops/add_rms_norm_packed_linear/add_rms_norm_packed_linear.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// (output, sum): with (normed, sum) = add_rms_norm(input, residual, norm_weight, eps) (input
/// and residual [*, in_features] of one dtype, float32, float16 or bfloat16; norm_weight
/// [in_features] in that dtype or float32), output = packed_ternary_linear(normed, packed,
/// scale, bias, in_features, activation_format, "auto", epilogue). The same values as those
/// two ops, but on CUDA, for at most 8 rows of 16-bit activations, one kernel: each block of
/// the projection recomputes the rows' norm from input and residual (a row is a few KB) and
/// one block writes the sum, so that a decode step's norms cost no launches of their own.
/// Not differentiable.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> add_rms_norm_packed_linear(
    const at::Tensor& input, const at::Tensor& residual, const at::Tensor& norm_weight, double eps,
    const at::Tensor& packed, const at::Tensor& scale, const std::optional<at::Tensor>& bias, int64_t in_features,
    c10::string_view activation_format = "none", c10::string_view epilogue = "none");

}  // namespace bittorch::ops
