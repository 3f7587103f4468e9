// bittorch::decode_attention on the CPU: one task per (batch, head), the arithmetic in the
// query's opmath type (float32, or float64 for a float64 query).

#include "ops/decode_attention/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace bittorch::ops {
namespace {

template <typename scalar_t>
void decode_attention_rows(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                           at::Tensor& key_cache, at::Tensor& value_cache, const std::vector<int64_t>& positions,
                           const at::Tensor& cos, const at::Tensor& signed_sin, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t heads = query.size(1), head_size = query.size(2), half = head_size / 2;
  const int64_t context = key_cache.size(2);
  const auto* q = query.const_data_ptr<scalar_t>();
  const auto* k = key.const_data_ptr<scalar_t>();
  const auto* v = value.const_data_ptr<scalar_t>();
  auto* keys = key_cache.mutable_data_ptr<scalar_t>();
  auto* values = value_cache.mutable_data_ptr<scalar_t>();
  auto* y = out.mutable_data_ptr<scalar_t>();
  const acc_t softmax_scale = acc_t(1) / std::sqrt(static_cast<acc_t>(head_size));
  at::parallel_for(0, query.size(0) * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> rotated(head_size), scores, sum(head_size);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t sequence = row / heads, head = row % heads, cached = row * context * head_size;
      // The inputs' sequences may lie apart (slices of a fused projection's output).
      const int64_t in_q = sequence * query.stride(0) + head * head_size;
      const int64_t in_k = sequence * key.stride(0) + head * head_size;
      const int64_t in_v = sequence * value.stride(0) + head * head_size;
      const int64_t in = row * head_size;
      const int64_t position = positions[positions.size() == 1 ? 0 : sequence];
      const auto* cos_row = cos.const_data_ptr<acc_t>() + position * head_size;
      const auto* sin_row = signed_sin.const_data_ptr<acc_t>() + position * head_size;
      scores.resize(position + 1);
      const auto rotate = [&](const scalar_t* x, int64_t d) {
        return static_cast<acc_t>(x[d]) * cos_row[d] + static_cast<acc_t>(x[(d + half) % head_size]) * sin_row[d];
      };
      for (int64_t d = 0; d < head_size; ++d) {
        rotated[d] = rotate(q + in_q, d);
        keys[cached + position * head_size + d] = static_cast<scalar_t>(rotate(k + in_k, d));
        values[cached + position * head_size + d] = v[in_v + d];
      }
      acc_t max_score = -std::numeric_limits<acc_t>::infinity();
      for (int64_t j = 0; j <= position; ++j) {
        acc_t dot = 0;
        for (int64_t d = 0; d < head_size; ++d) {
          dot += rotated[d] * static_cast<acc_t>(keys[cached + j * head_size + d]);
        }
        scores[j] = dot * softmax_scale;
        max_score = std::isnan(scores[j]) ? scores[j] : std::max(max_score, scores[j]);
      }
      acc_t total = 0;
      std::fill(sum.begin(), sum.end(), acc_t(0));
      for (int64_t j = 0; j <= position; ++j) {
        const acc_t weight = std::exp(scores[j] - max_score);
        total += weight;
        for (int64_t d = 0; d < head_size; ++d) {
          sum[d] += weight * static_cast<acc_t>(values[cached + j * head_size + d]);
        }
      }
      for (int64_t d = 0; d < head_size; ++d) y[in + d] = static_cast<scalar_t>(sum[d] / total);
    }
  });
}

at::Tensor decode_attention_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& position,
                                const at::Tensor& cos, const at::Tensor& signed_sin) {
  const char* op = "bittorch::decode_attention";
  check_decode_attention_args(op, query, key, value, key_cache, value_cache, position, cos, signed_sin);
  const auto* position_data = position.const_data_ptr<int64_t>();
  const std::vector<int64_t> positions(position_data, position_data + position.numel());
  for (const int64_t p : positions) {
    TORCH_CHECK(p >= 0 && p < key_cache.size(2), op, ": position ", p, " is outside the cache's context of ",
                key_cache.size(2));
  }
  auto out = at::empty(query.sizes(), query.options());
  const auto q = with_contiguous_rows(query), k = with_contiguous_rows(key), v = with_contiguous_rows(value);
  const auto cos_table = cos.contiguous(), sin_table = signed_sin.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "decode_attention_cpu", [&] {
    decode_attention_rows<scalar_t>(q, k, v, key_cache, value_cache, positions, cos_table, sin_table, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("decode_attention", &decode_attention_cpu);
}

}  // namespace bittorch::ops
