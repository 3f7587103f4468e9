#pragma once

// Fused ternary quantization on the GPU: the per-row (or global) scale and the codes of a
// weight matrix, in two deterministic passes (a fixed-order block reduction per row, then
// one elementwise pass), with the CPU reference's arithmetic so that the codes are
// bit-identical to it.

#include <bittorch/quant/ternarize.h>

#include <ATen/core/Tensor.h>

namespace bittorch::ops::cuda {

/// Returns (codes, scale). codes has `codes_dtype`; with `dequantize` it holds
/// code * scale instead of the code (the operand the GEMMs read), else the code itself.
std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                             bool per_channel, quant::ScaleMode mode,
                                             at::ScalarType codes_dtype, bool dequantize);

}  // namespace bittorch::ops::cuda
