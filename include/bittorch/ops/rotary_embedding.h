#pragma once

// bittorch::rotary_embedding: the rotary position embedding of queries and keys, both in one
// op (one kernel each way on CUDA), and rotary_embedding_split, the same on the heads of a
// joined q, k, v projection; schemas in src/ops/rotary_embedding/rotary_embedding.cpp.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <tuple>

namespace bittorch::ops {

/// Rotates query [batch, heads, positions, head_size] and key [batch, key_heads, positions,
/// head_size] (any strides; the outputs keep the inputs' layouts) by the tables of
/// nn::functional::rotary_tables narrowed to the positions, cos and signed_sin [positions,
/// head_size]: with h = head_size / 2 and the partner p(d) = (d + h) mod head_size,
///   out[..., t, d] = x[..., t, d] * cos[t, d] + x[..., t, p(d)] * signed_sin[t, d],
/// that is (x1 cos - x2 sin, x2 cos + x1 sin) for the halves x1, x2. Queries and keys in
/// float32, float64, float16 or bfloat16 (both the same), the tables in any floating dtype,
/// arithmetic in float32 (float64 for float64). Differentiable in query and key (the backward is
/// the inverse rotation, _rotary_embedding_backward); the tables get no gradient.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> rotary_embedding(const at::Tensor& query, const at::Tensor& key,
                                                                 const at::Tensor& cos, const at::Tensor& signed_sin);

/// The backward: the gradients rotated back (signed_sin's sign flipped),
///   grad_x[..., t, d] = grad[..., t, d] * cos[t, d] - grad[..., t, p(d)] * signed_sin[t, d].
BITTORCH_API std::tuple<at::Tensor, at::Tensor> _rotary_embedding_backward(const at::Tensor& grad_query,
                                                                           const at::Tensor& grad_key,
                                                                           const at::Tensor& cos,
                                                                           const at::Tensor& signed_sin);

/// The heads of one joined projection (q, k and v side by side): `joined` [batch, positions,
/// (query_heads + 2 key_heads) * head_size] holds query_heads query heads, then key_heads key
/// heads, then as many value heads, of the tables' head size. Returns the query and key heads
/// rotated as rotary_embedding does and the value heads as they are, each a new [batch, heads,
/// positions, head_size] tensor laid out [batch, positions, heads, head_size]. Differentiable in
/// `joined`: the backward (_rotary_embedding_split_backward) writes the three gradients, the
/// query's and key's rotated back, side by side into one tensor of joined's shape, so that a
/// joined projection's backward takes it without a concatenation.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> rotary_embedding_split(const at::Tensor& joined,
                                                                                   int64_t query_heads,
                                                                                   const at::Tensor& cos,
                                                                                   const at::Tensor& signed_sin);

/// The backward of rotary_embedding_split: [batch, positions, (query_heads + 2 key_heads) *
/// head_size], the gradients of grad_query [batch, query_heads, positions, head_size] rotated
/// back, of grad_key rotated back, and grad_value, side by side.
BITTORCH_API at::Tensor _rotary_embedding_split_backward(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                         const at::Tensor& grad_value, const at::Tensor& cos,
                                                         const at::Tensor& signed_sin);

}  // namespace bittorch::ops
