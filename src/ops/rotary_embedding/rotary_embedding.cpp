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
                               const at::Tensor& signed_sin) {
  check_rotary_embedding_args(op, query, key, cos, signed_sin);
  const auto table_dtype = query.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto head_contiguous = [](const at::Tensor& x) { return x.stride(3) == 1 ? x : x.contiguous(); };
  return {head_contiguous(query),           head_contiguous(key),
          cos.to(table_dtype).contiguous(), signed_sin.to(table_dtype).contiguous(),
          rotary_output_like(query),        rotary_output_like(key)};
}

}  // namespace bittorch::ops
