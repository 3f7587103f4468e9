#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace bittorch::ops::cuda {

/// Whether the current CUDA device can run the FP8 e4m3 product of eight_bit_product for
/// `rows` x `in_features` activations and `out_features` x `in_features` codes, both scaled per
/// row (outer-vector scales), in float32 sums written as `out_dtype`, with the bias in the
/// epilogue or not: FP8 tensor cores (compute capability 8.9 and later), and an algorithm that
/// cuBLASLt's own heuristic offers for that description. Cached per device and shape.
bool fp8_product_available(int64_t rows, int64_t in_features, int64_t out_features, at::ScalarType out_dtype,
                           bool bias_epilogue);

}  // namespace bittorch::ops::cuda
