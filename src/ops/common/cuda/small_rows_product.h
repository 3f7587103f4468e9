#pragma once

// The product of a few activation rows (decoding, small batches) with 8-bit ternary codes, in
// one kernel: each weight byte is read once from memory and every row is multiplied with it.
// At up to 16 rows the GEMMs are memory-bound, and this reads 1 byte per weight where a
// bfloat16 product reads 2 and an FP8 cuBLASLt call (which refuses some one-row shapes)
// brings its own overhead. Shared by ternary_linear's CUDA forward (16-bit and 8-bit
// activations) and the 8-bit product.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace bittorch::ops::cuda {

/// The most rows small_rows_product takes.
constexpr int64_t kSmallRowsMax = 16;

/// y = (x @ codes^T) * row_scale * weight_scale + bias, written as `dtype`.
/// - x: [M, K] rows, M <= kSmallRowsMax: float32/float16/bfloat16 activations (row_scale
///   undefined; the weight scale is then rounded to `dtype` first, as the operand codes *
///   scale of the 16-bit products is), or 8-bit values (int8, float8_e4m3fn) with row_scale
///   [M, 1] float32.
/// - codes: [N, K] ternary codes as int8 or float8_e4m3fn (only -1, 0 and +1 are read right).
/// - weight_scale: [N] or [1] float32; bias: [N] in `dtype`, or none.
/// Sums in float32 in a fixed order (deterministic); `dtype` float32, float16 or bfloat16.
at::Tensor small_rows_product(const at::Tensor& x, const at::Tensor& row_scale, const at::Tensor& codes,
                              const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                              at::ScalarType dtype);

}  // namespace bittorch::ops::cuda
