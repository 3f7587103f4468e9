#include "ops/rotary_embedding/rotary_embedding.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> forward_meta(const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                                                const at::Tensor& signed_sin) {
  check_rotary_embedding_args("bittorch::rotary_embedding", query, key, cos, signed_sin);
  return {rotary_output_like(query), rotary_output_like(key)};
}

std::tuple<at::Tensor, at::Tensor> backward_meta(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                 const at::Tensor& cos, const at::Tensor& signed_sin) {
  check_rotary_embedding_args("bittorch::_rotary_embedding_backward", grad_query, grad_key, cos, signed_sin);
  return {rotary_output_like(grad_query), rotary_output_like(grad_key)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_forward_meta(const at::Tensor& joined, int64_t query_heads,
                                                                  const at::Tensor& cos, const at::Tensor& signed_sin) {
  const int64_t key_heads =
      check_rotary_split_args("bittorch::rotary_embedding_split", joined, query_heads, cos, signed_sin).key.size(1);
  const int64_t batch = joined.size(0), positions = joined.size(1), head_size = cos.size(1);
  return {joined_heads_output(joined, batch, query_heads, positions, head_size),
          joined_heads_output(joined, batch, key_heads, positions, head_size),
          joined_heads_output(joined, batch, key_heads, positions, head_size)};
}

at::Tensor split_backward_meta(const at::Tensor& grad_query, const at::Tensor& grad_key, const at::Tensor& grad_value,
                               const at::Tensor& cos, const at::Tensor& signed_sin) {
  check_rotary_split_backward_args("bittorch::_rotary_embedding_split_backward", grad_query, grad_key, grad_value, cos,
                                   signed_sin);
  return at::empty(
      {grad_query.size(0), grad_query.size(2), (grad_query.size(1) + 2 * grad_key.size(1)) * grad_query.size(3)},
      grad_query.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("rotary_embedding", &forward_meta);
  m.impl("_rotary_embedding_backward", &backward_meta);
  m.impl("rotary_embedding_split", &split_forward_meta);
  m.impl("_rotary_embedding_split_backward", &split_backward_meta);
}

}  // namespace bittorch::ops
