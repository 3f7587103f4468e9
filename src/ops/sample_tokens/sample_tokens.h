#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace bittorch::ops {

/// sample_tokens's arguments: logits [batch, vocab] (batch, vocab >= 1) of a floating dtype it
/// takes, temperature >= 0 and finite, top_k >= 0.
void check_sample_tokens_args(const char* op, const at::Tensor& logits, double temperature, int64_t top_k);

}  // namespace bittorch::ops
