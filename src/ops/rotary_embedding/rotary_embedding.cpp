// bittorch::rotary_embedding: schema, typed entries and argument checks.

#include "ops/rotary_embedding/rotary_embedding.h"

#include <bittorch/ops/rotary_embedding.h>

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  m.def("rotary_embedding(Tensor query, Tensor key, Tensor cos, Tensor signed_sin) -> (Tensor, Tensor)");
  m.def(
      "_rotary_embedding_backward(Tensor grad_query, Tensor grad_key, Tensor cos, Tensor signed_sin) -> "
      "(Tensor, Tensor)");
  // The query, key and value heads of one joined projection, the query and key rotated; the
  // backward writes the three gradients side by side, as the joined projection's gradient.
  m.def(
      "rotary_embedding_split(Tensor joined, int query_heads, Tensor cos, Tensor signed_sin) -> "
      "(Tensor query, Tensor key, Tensor value)");
  m.def(
      "_rotary_embedding_split_backward(Tensor grad_query, Tensor grad_key, Tensor grad_value, Tensor cos, "
      "Tensor signed_sin) -> Tensor");
}

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> rotary_embedding(const at::Tensor& query, const at::Tensor& key,
                                                    const at::Tensor& cos, const at::Tensor& signed_sin) {
  static const auto op = find_op<decltype(rotary_embedding)>("bittorch::rotary_embedding");
  return op.call(query, key, cos, signed_sin);
}

std::tuple<at::Tensor, at::Tensor> _rotary_embedding_backward(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                              const at::Tensor& cos, const at::Tensor& signed_sin) {
  static const auto op = find_op<decltype(_rotary_embedding_backward)>("bittorch::_rotary_embedding_backward");
  return op.call(grad_query, grad_key, cos, signed_sin);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rotary_embedding_split(const at::Tensor& joined, int64_t query_heads,
                                                                      const at::Tensor& cos,
                                                                      const at::Tensor& signed_sin) {
  static const auto op = find_op<decltype(rotary_embedding_split)>("bittorch::rotary_embedding_split");
  return op.call(joined, query_heads, cos, signed_sin);
}

at::Tensor _rotary_embedding_split_backward(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                            const at::Tensor& grad_value, const at::Tensor& cos,
                                            const at::Tensor& signed_sin) {
  static const auto op =
      find_op<decltype(_rotary_embedding_split_backward)>("bittorch::_rotary_embedding_split_backward");
  return op.call(grad_query, grad_key, grad_value, cos, signed_sin);
}

void check_rotary_embedding_args(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                                 const at::Tensor& signed_sin) {
  check_floating(op, "query", query);
  check_floating(op, "key", key);
  const auto dtype = query.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": expected a float32, float64, float16 or bfloat16 query, but got ", dtype);
  TORCH_CHECK(key.scalar_type() == dtype && key.device() == query.device(), op,
              ": expected a key of the query's dtype ", dtype, " on its device ", query.device(), ", but got ",
              key.scalar_type(), " on ", key.device());
  TORCH_CHECK(query.dim() == 4 && key.dim() == 4, op,
              ": expected query and key [batch, heads, positions, head_size], but got ", query.sizes(), " and ",
              key.sizes());
  const int64_t positions = query.size(2), head_size = query.size(3);
  TORCH_CHECK(key.size(0) == query.size(0) && key.size(2) == positions && key.size(3) == head_size, op, ": the key ",
              key.sizes(), " must have the query's batch, positions and head size ", query.sizes());
  TORCH_CHECK(head_size % 2 == 0, op, ": the head size must be even, not ", head_size);
  for (const auto& [name, table] : {std::pair{"cos", &cos}, std::pair{"signed_sin", &signed_sin}}) {
    check_floating(op, name, *table);
    TORCH_CHECK(table->dim() == 2 && table->size(0) == positions && table->size(1) == head_size &&
                    table->device() == query.device(),
                op, ": expected ", name, " [", positions, ", ", head_size, "] on ", query.device(),
                " (rotary_tables narrowed to the positions), but got ", table->sizes(), " on ", table->device());
  }
}

at::Tensor rotary_output_like(const at::Tensor& input) {
  auto output = at::empty_like(input);
  return output.stride(3) == 1 ? output : at::empty(input.sizes(), input.options());
}

RotaryOperands rotary_operands(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                               const at::Tensor& signed_sin, const at::Tensor& rotated_query,
                               const at::Tensor& rotated_key) {
  check_rotary_embedding_args(op, query, key, cos, signed_sin);
  const auto table_dtype = query.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto head_contiguous = [](const at::Tensor& x) { return x.stride(3) == 1 ? x : x.contiguous(); };
  return {head_contiguous(query),
          head_contiguous(key),
          cos.to(table_dtype).contiguous(),
          signed_sin.to(table_dtype).contiguous(),
          rotated_query.defined() ? rotated_query : rotary_output_like(query),
          rotated_key.defined() ? rotated_key : rotary_output_like(key)};
}

JoinedHeads joined_heads(const at::Tensor& joined, int64_t query_heads, int64_t key_heads, int64_t head_size) {
  const int64_t batch = joined.size(0), positions = joined.size(1);
  const auto heads = [&](int64_t first, int64_t count) {
    return joined.narrow(2, first * head_size, count * head_size)
        .view({batch, positions, count, head_size})
        .transpose(1, 2);
  };
  return {heads(0, query_heads), heads(query_heads, key_heads), heads(query_heads + key_heads, key_heads)};
}

at::Tensor joined_heads_output(const at::Tensor& like, int64_t batch, int64_t heads, int64_t positions,
                               int64_t head_size) {
  return at::empty({batch, positions, heads, head_size}, like.options()).transpose(1, 2);
}

JoinedHeads check_rotary_split_args(const char* op, const at::Tensor& joined, int64_t query_heads,
                                    const at::Tensor& cos, const at::Tensor& signed_sin) {
  TORCH_CHECK(joined.dim() == 3, op, ": expected joined [batch, positions, width], but got ", joined.sizes());
  TORCH_CHECK(cos.dim() == 2 && cos.size(1) > 0, op, ": expected cos [positions, head_size], but got ", cos.sizes());
  const int64_t head_size = cos.size(1), width = joined.size(2);
  TORCH_CHECK(query_heads > 0 && width % head_size == 0 && width / head_size > query_heads &&
                  (width / head_size - query_heads) % 2 == 0,
              op, ": a joined width of ", width, " is not ", query_heads,
              " query heads and as many key as value heads of ", head_size, " (the tables' head size)");
  const int64_t key_heads = (width / head_size - query_heads) / 2;
  auto heads = joined_heads(joined, query_heads, key_heads, head_size);
  check_rotary_embedding_args(op, heads.query, heads.key, cos, signed_sin);
  return heads;
}

void check_rotary_split_backward_args(const char* op, const at::Tensor& grad_query, const at::Tensor& grad_key,
                                      const at::Tensor& grad_value, const at::Tensor& cos,
                                      const at::Tensor& signed_sin) {
  check_rotary_embedding_args(op, grad_query, grad_key, cos, signed_sin);
  TORCH_CHECK(grad_value.sizes() == grad_key.sizes() && grad_value.scalar_type() == grad_key.scalar_type() &&
                  grad_value.device() == grad_key.device(),
              op, ": expected grad_value like grad_key ", grad_key.sizes(), " ", grad_key.scalar_type(), " on ",
              grad_key.device(), ", but got ", grad_value.sizes(), " ", grad_value.scalar_type(), " on ",
              grad_value.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rotary_split_forward(const char* op, const at::Tensor& joined,
                                                                    int64_t query_heads, const at::Tensor& cos,
                                                                    const at::Tensor& signed_sin,
                                                                    const RotateInto& rotate) {
  const auto in = check_rotary_split_args(op, joined, query_heads, cos, signed_sin);
  const int64_t batch = joined.size(0), positions = joined.size(1), head_size = cos.size(1);
  const int64_t key_heads = in.key.size(1);
  auto query = joined_heads_output(joined, batch, query_heads, positions, head_size);
  auto key = joined_heads_output(joined, batch, key_heads, positions, head_size);
  auto value = joined_heads_output(joined, batch, key_heads, positions, head_size);
  rotate(in.query, in.key, in.value.stride(3) == 1 ? in.value : in.value.contiguous(), 1.0, query, key, value);
  return {query, key, value};
}

at::Tensor rotary_split_backward(const char* op, const at::Tensor& grad_query, const at::Tensor& grad_key,
                                 const at::Tensor& grad_value, const at::Tensor& cos, const at::Tensor& signed_sin,
                                 const RotateInto& rotate) {
  check_rotary_split_backward_args(op, grad_query, grad_key, grad_value, cos, signed_sin);
  const int64_t batch = grad_query.size(0), positions = grad_query.size(2), head_size = grad_query.size(3);
  const int64_t query_heads = grad_query.size(1), key_heads = grad_key.size(1);
  auto grad = at::empty({batch, positions, (query_heads + 2 * key_heads) * head_size}, grad_query.options());
  auto out = joined_heads(grad, query_heads, key_heads, head_size);
  // The head dimension contiguous, as the rotation reads its inputs (a copy only if not).
  rotate(grad_query, grad_key, grad_value.stride(3) == 1 ? grad_value : grad_value.contiguous(), -1.0, out.query,
         out.key, out.value);
  return grad;
}

}  // namespace bittorch::ops
