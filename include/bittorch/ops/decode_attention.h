#pragma once

// bittorch::decode_attention: one decoding step of causal self-attention with rotary position
// embeddings and a KV cache, in one op (schema in src/ops/decode_attention/decode_attention.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace bittorch::ops {

/// The attention output [batch, heads, head_size] of the token at position p, whose query,
/// key and value are [batch, heads, head_size] (head_size even). Writes rot(key, p) and value
/// into row p of key_cache and value_cache [batch, heads, context, head_size] (p < context),
/// then returns softmax(rot(query, p) . key_cache[0..p] / sqrt(head_size)) . value_cache[0..p].
/// rot(x, p) = x * cos[p] + roll(x, head_size / 2) * signed_sin[p]: the tables of
/// nn::functional::rotary_tables, [>= context, head_size], in float32 (float64 for a float64
/// query). query, key, value and the caches share one dtype (float32, float16, bfloat16; float64
/// on the CPU); the arithmetic is in float32 (float64). `position` holds p: an int64 [1] for the
/// whole batch, or [batch] with each sequence's own (sequences of different lengths decoded
/// together), on the same device, so that a CUDA graph can capture the step and replay it at
/// the next positions; on the CPU an out-of-range position is a c10::Error, on CUDA (where
/// checking would need a synchronisation) that sequence gets nothing written and NaN outputs.
/// Inference only: not differentiable.
BITTORCH_API at::Tensor decode_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                         at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& position,
                                         const at::Tensor& cos, const at::Tensor& signed_sin);

/// Whether decode_attention takes this head size and context on `device` (caches of
/// contiguous, freshly allocated rows): always on the CPU; on CUDA head sizes up to 512 and
/// contexts whose scores fit the kernel's shared memory (about 9,000 positions). Where
/// it does not, nn::TransformerLM decodes through scaled_dot_product_attention over the cache.
BITTORCH_API bool decode_attention_supports(c10::Device device, int64_t head_size, int64_t context);

}  // namespace bittorch::ops
