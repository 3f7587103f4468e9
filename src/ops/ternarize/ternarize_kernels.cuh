#pragma once

// Fused ternary quantization on the GPU: the scale and the codes of a weight matrix. Per
// channel it is one pass (a block reads its row once, reduces it, then writes the row's
// outputs; row_quantize.cuh); a global scale takes row statistics, one final reduction and
// an elementwise pass. Reductions run in a fixed order (deterministic) and the arithmetic is
// the CPU reference's, so that codes and scales are bit-identical to it.

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <optional>

namespace bittorch::ops::cuda {

/// What one quantization pass writes besides the scale; at least one of them.
struct TernarizeTargets {
  /// The codes in this dtype: the weight's own, int8, or float8_e4m3fn (the GEMMs' 8-bit
  /// operands). None if nullopt.
  std::optional<at::ScalarType> codes_dtype;
  /// code * scale in this dtype (the weight's, or float16/bfloat16 for a float32 weight):
  /// the operand of the 16-bit products. None if nullopt.
  std::optional<at::ScalarType> operand_dtype;
};

struct TernarizedOnDevice {
  at::Tensor codes;    // undefined unless asked for
  at::Tensor operand;  // undefined unless asked for
  at::Tensor scale;    // [rows] per channel or [1], float32 (float64 for float64 weights)
};

TernarizedOnDevice ternarize_on_device(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                       quant::ScaleMode mode, const TernarizeTargets& targets);

}  // namespace bittorch::ops::cuda
