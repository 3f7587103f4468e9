// bittorch::decode_attention: schema, typed entry and argument checks.

#include "ops/decode_attention/decode_attention.h"

#include <bittorch/ops/decode_attention.h>

#include "ops/common/checks.h"

#include <ATen/OpMathType.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // One decoding step: rotary embedding of the new query and key at `position` (one for the
  // batch, or one per sequence), the key and value written into the caches, attention over the
  // cached positions 0..position. Not differentiable.
  m.def(
      "decode_attention(Tensor query, Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, "
      "Tensor position, Tensor cos, Tensor signed_sin) -> Tensor");
}

namespace bittorch::ops {

at::Tensor decode_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                            at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& position,
                            const at::Tensor& cos, const at::Tensor& signed_sin) {
  static const auto op = find_op<decltype(decode_attention)>("bittorch::decode_attention");
  return op.call(query, key, value, key_cache, value_cache, position, cos, signed_sin);
}

bool decode_attention_supports(c10::Device device, int64_t head_size, int64_t context) {
  if (!device.is_cuda()) return true;
  constexpr int64_t kWidestVector = 8, kThreads = kDecodeAttentionCudaThreads;
  const int64_t floats = head_size + context + kThreads * kWidestVector;
  return head_size <= 2 * kThreads && floats * static_cast<int64_t>(sizeof(float)) <= kDecodeAttentionCudaSharedBytes;
}

at::Tensor with_contiguous_rows(const at::Tensor& t) {
  const bool rows = (t.size(2) <= 1 || t.stride(2) == 1) && (t.size(1) <= 1 || t.stride(1) == t.size(2));
  return rows ? t : t.contiguous();
}

void check_decode_attention_args(const char* op, const at::Tensor& query, const at::Tensor& key,
                                 const at::Tensor& value, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                 const at::Tensor& position, const at::Tensor& cos, const at::Tensor& signed_sin) {
  check_floating(op, "query", query);
  TORCH_CHECK(
      query.dim() == 3 && query.size(0) >= 1 && query.size(1) >= 1 && query.size(2) >= 2 && query.size(2) % 2 == 0, op,
      ": expected query [batch, heads, head_size] with an even head_size, but got shape ", query.sizes());
  const auto dtype = query.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble, op,
              ": expected a float32, float16, bfloat16 or float64 query, but got ", dtype);
  for (const auto& [name, tensor] : {std::pair{"key", &key}, std::pair{"value", &value}}) {
    TORCH_CHECK(tensor->defined() && tensor->sizes() == query.sizes() && tensor->scalar_type() == dtype, op,
                ": expected ", name, " of the query's shape ", query.sizes(), " and dtype ", dtype, ", but got ",
                tensor->defined() ? tensor->sizes() : at::IntArrayRef{}, " ",
                tensor->defined() ? tensor->scalar_type() : at::ScalarType::Undefined);
  }
  const int64_t batch = query.size(0), heads = query.size(1), head_size = query.size(2);
  for (const auto& [name, cache] : {std::pair{"key_cache", &key_cache}, std::pair{"value_cache", &value_cache}}) {
    TORCH_CHECK(cache->defined() && cache->dim() == 4 && cache->size(0) == batch && cache->size(1) == heads &&
                    cache->size(2) >= 1 && cache->size(3) == head_size && cache->scalar_type() == dtype &&
                    cache->is_contiguous(),
                op, ": expected a contiguous ", name, " [", batch, ", ", heads, ", context, ", head_size, "] of dtype ",
                dtype, ", but got ", cache->defined() ? cache->sizes() : at::IntArrayRef{}, " ",
                cache->defined() ? cache->scalar_type() : at::ScalarType::Undefined,
                cache->defined() && !cache->is_contiguous() ? " (not contiguous)" : "");
  }
  TORCH_CHECK(value_cache.sizes() == key_cache.sizes(), op, ": key_cache ", key_cache.sizes(), " and value_cache ",
              value_cache.sizes(), " differ");
  const int64_t context = key_cache.size(2);
  TORCH_CHECK(position.defined() && position.scalar_type() == at::kLong && position.dim() == 1 &&
                  (position.numel() == 1 || position.numel() == batch) && position.is_contiguous(),
              op, ": expected position to be a contiguous int64 tensor [1] or [", batch,
              "] (one per sequence), but got ", position.defined() ? position.scalar_type() : at::ScalarType::Undefined,
              " ", position.defined() ? position.sizes() : at::IntArrayRef{});
  const auto table_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  for (const auto& [name, table] : {std::pair{"cos", &cos}, std::pair{"signed_sin", &signed_sin}}) {
    TORCH_CHECK(table->defined() && table->dim() == 2 && table->size(0) >= context && table->size(1) == head_size &&
                    table->scalar_type() == table_dtype,
                op, ": expected ", name, " [>= ", context, ", ", head_size, "] of dtype ", table_dtype,
                " (rotary_tables), but got ", table->defined() ? table->sizes() : at::IntArrayRef{}, " ",
                table->defined() ? table->scalar_type() : at::ScalarType::Undefined);
  }
  for (const auto& [name, tensor] :
       {std::pair{"key", &key}, std::pair{"value", &value}, std::pair{"key_cache", &key_cache},
        std::pair{"value_cache", &value_cache}, std::pair{"position", &position}, std::pair{"cos", &cos},
        std::pair{"signed_sin", &signed_sin}}) {
    TORCH_CHECK(tensor->device() == query.device(), op, ": expected ", name, " on the query's device ", query.device(),
                ", but it is on ", tensor->device());
  }
}

}  // namespace bittorch::ops
