#pragma once

// The product of a few rows of 8-bit activations with 8-bit ternary codes in one kernel, for
// the shapes cuBLASLt's FP8 product and cuBLAS's INT8 product refuse even on zero-padded rows
// (N or K not a multiple of 16 or 8; FP8 without FP8 tensor cores): each code byte is read
// once and used for every row, where the fallback converts the whole code matrix to bfloat16
// first. Measured on an H200 it halves a refused one-row product and stops paying beyond 4
// rows (docs/results.md), hence kSmallRowsMax. Used by the 8-bit product (eight_bit_product).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace bittorch::ops::cuda {

/// The most rows small_rows_product takes.
constexpr int64_t kSmallRowsMax = 4;

/// y = (x @ codes^T) * row_scale * weight_scale + bias, written as `dtype`.
/// - x: [M, K] 8-bit values (int8 or float8_e4m3fn), M <= kSmallRowsMax, with row_scale [M, 1].
/// - codes: [N, K] ternary codes as int8 or float8_e4m3fn (only -1, 0 and +1 are read right).
/// - weight_scale: [N] or [1] float32; bias: [N] in `dtype`, or none.
/// Sums in float32 in a fixed order (deterministic); `dtype` float32, float16 or bfloat16.
at::Tensor small_rows_product(const at::Tensor& x, const at::Tensor& row_scale, const at::Tensor& codes,
                              const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                              at::ScalarType dtype);

}  // namespace bittorch::ops::cuda
