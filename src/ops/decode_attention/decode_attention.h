#pragma once

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

// The CUDA kernel's block of threads and its dynamic shared memory: the rotated query, a score
// per cached position and the partial sums of its value groups (at most the block's threads
// times the widest vector, 8 elements) in float32; 46 KiB leaves room for the static part under
// the 48 KiB a launch takes without opting in to more.
constexpr int kDecodeAttentionCudaThreads = 256;
constexpr int64_t kDecodeAttentionCudaSharedBytes = 46 * 1024;

/// The shapes, dtypes and devices of bittorch::decode_attention's arguments (see
/// include/bittorch/ops/decode_attention.h); not the position's value, which may live on a GPU.
void check_decode_attention_args(const char* op, const at::Tensor& query, const at::Tensor& key,
                                 const at::Tensor& value, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                 const at::Tensor& position, const at::Tensor& cos, const at::Tensor& signed_sin);

/// `t` ([batch, heads, head_size]) itself when each sequence's [heads, head_size] block is
/// contiguous, whatever the stride between sequences (the query, key and value sliced from
/// one fused projection's output are), else a contiguous copy. The kernels take the stride.
at::Tensor with_contiguous_rows(const at::Tensor& t);

}  // namespace bittorch::ops
