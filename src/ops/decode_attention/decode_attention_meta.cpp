#include "ops/decode_attention/decode_attention.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor decode_attention_meta(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                 at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& position,
                                 const at::Tensor& cos, const at::Tensor& signed_sin) {
  check_decode_attention_args("bittorch::decode_attention", query, key, value, key_cache, value_cache, position, cos,
                              signed_sin);
  return at::empty(query.sizes(), query.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("decode_attention", &decode_attention_meta);
}

}  // namespace bittorch::ops
