#pragma once

// bittorch::rotary_embedding: the rotary position embedding of queries and keys, both in one
// op (one kernel each way on CUDA); schema in src/ops/rotary_embedding/rotary_embedding.cpp.

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

}  // namespace bittorch::ops
