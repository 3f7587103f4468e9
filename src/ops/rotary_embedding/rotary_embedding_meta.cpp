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

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("rotary_embedding", &forward_meta);
  m.impl("_rotary_embedding_backward", &backward_meta);
}

}  // namespace bittorch::ops
