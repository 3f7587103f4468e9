#pragma once

// bittorch::sample_tokens: the next token of each row of logits, greedy or drawn from the
// tempered softmax of the top k, on CUDA in one kernel (schema in
// src/ops/sample_tokens/sample_tokens.cpp).

#include <bittorch/export.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace bittorch::ops {

/// The next token of each row of `logits` [batch, vocab] (float32, float64, float16 or
/// bfloat16), as int64 [batch] on the logits' device, without waiting for the device.
/// Temperature 0: the argmax (the first of the largest). Else a draw from
/// softmax(logits / temperature) restricted to the top_k largest scores (0: all; scores equal
/// to the k-th are kept too), scores in float32, with `generator` (the device's default when
/// absent). A row holding NaN gives the index of its first NaN.
///
/// The draw is the exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) independent picks i
/// with probability p_i. On the CPU the E_i are ATen's exponential draws (as
/// at::multinomial's one sample). On CUDA one kernel a call, a block per row: the k-th score
/// by a radix select, then argmax_i s_i - log E_i over the kept scores, E_i = -log U_i with U_i
/// from the counter-based Philox4x32-10 at the generator's seed and offset (counter: the
/// offset, i, the row), so a CUDA graph captures it with its generator registered and each
/// replay draws anew. The two devices draw different numbers for one seed.
BITTORCH_API at::Tensor sample_tokens(const at::Tensor& logits, double temperature, int64_t top_k = 0,
                                      std::optional<at::Generator> generator = std::nullopt);

}  // namespace bittorch::ops
