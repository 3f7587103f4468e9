#pragma once

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

/// The shapes, dtypes and devices of bittorch::decode_attention's arguments (see
/// include/bittorch/ops/decode_attention.h); not the position's value, which may live on a GPU.
void check_decode_attention_args(const char* op, const at::Tensor& query, const at::Tensor& key,
                                 const at::Tensor& value, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                 const at::Tensor& position, const at::Tensor& cos, const at::Tensor& signed_sin);

}  // namespace bittorch::ops
