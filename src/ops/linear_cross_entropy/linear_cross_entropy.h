#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace bittorch::ops {

/// The shapes and dtypes of bittorch::linear_cross_entropy's arguments (see
/// include/bittorch/ops/linear_cross_entropy.h); target values are checked on the CPU only
/// (on a GPU that would wait for it; the gather there refuses an index out of range).
void check_linear_cross_entropy_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                     const at::Tensor& target, int64_t chunk_rows);

/// The rows of one chunk: chunk_rows, or (0) as many as keep a chunk's logits near 64 MiB.
int64_t linear_cross_entropy_chunk(int64_t chunk_rows, int64_t rows, int64_t classes);

}  // namespace bittorch::ops
