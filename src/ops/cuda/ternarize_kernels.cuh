#pragma once

// Fused ternary quantization on the GPU: the scale and the codes of a weight matrix. Per
// channel it is one pass (a block reduces its row, then writes the row's codes); a global
// scale takes row sums, one final reduction and an elementwise pass. Reductions run in a
// fixed order (deterministic) and the arithmetic is the CPU reference's, so that the codes
// and scales are bit-identical to it.

#include <bittorch/quant/ternarize.h>

#include <ATen/core/Tensor.h>

namespace bittorch::ops::cuda {

/// Returns (codes, scale). codes has `codes_dtype`; with `dequantize` it holds
/// code * scale instead of the code (the operand the GEMMs read), else the code itself.
std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                             bool per_channel, quant::ScaleMode mode,
                                             at::ScalarType codes_dtype, bool dequantize);

}  // namespace bittorch::ops::cuda
