// bittorch::rotary_embedding on the CPU, from its formula: each thread takes whole rows (one
// position of one head) of the query and the key, and writes both halves of each pair.

#include "ops/rotary_embedding/rotary_embedding.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// out = x * cos + partner(x) * sign * signed_sin over every row of x [batch, heads, positions,
// head_size] (head dimension contiguous in x and out); sign -1 is the inverse rotation.
template <typename scalar_t>
void rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& signed_sin, double sign, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t heads = x.size(1), positions = x.size(2), half = x.size(3) / 2;
  const auto* in = x.const_data_ptr<scalar_t>();
  auto* result = out.mutable_data_ptr<scalar_t>();
  const auto* c = cos.const_data_ptr<acc_t>();
  const auto* s = signed_sin.const_data_ptr<acc_t>();
  const auto factor = static_cast<acc_t>(sign);
  const int64_t rows = x.size(0) * heads * positions;
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / x.size(3)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t t = row % positions, h = (row / positions) % heads, b = row / (positions * heads);
      const scalar_t* xr = in + b * x.stride(0) + h * x.stride(1) + t * x.stride(2);
      scalar_t* yr = result + b * out.stride(0) + h * out.stride(1) + t * out.stride(2);
      const acc_t* cr = c + t * 2 * half;
      const acc_t* sr = s + t * 2 * half;
      for (int64_t j = 0; j < half; ++j) {
        const acc_t x1 = static_cast<acc_t>(xr[j]), x2 = static_cast<acc_t>(xr[j + half]);
        yr[j] = static_cast<scalar_t>(x1 * cr[j] + x2 * factor * sr[j]);
        yr[j + half] = static_cast<scalar_t>(x2 * cr[j + half] + x1 * factor * sr[j + half]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> rotate_both(const char* op, const at::Tensor& query, const at::Tensor& key,
                                               const at::Tensor& cos, const at::Tensor& signed_sin, double sign,
                                               const at::Tensor& rotated_query = {},
                                               const at::Tensor& rotated_key = {}) {
  auto o = rotary_operands(op, query, key, cos, signed_sin, rotated_query, rotated_key);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "rotary_embedding_cpu", [&] {
    rotate<scalar_t>(o.query, o.cos, o.signed_sin, sign, o.rotated_query);
    rotate<scalar_t>(o.key, o.cos, o.signed_sin, sign, o.rotated_key);
  });
  return {o.rotated_query, o.rotated_key};
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                                               const at::Tensor& signed_sin) {
  return rotate_both("bittorch::rotary_embedding", query, key, cos, signed_sin, 1.0);
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                const at::Tensor& cos, const at::Tensor& signed_sin) {
  return rotate_both("bittorch::_rotary_embedding_backward", grad_query, grad_key, cos, signed_sin, -1.0);
}

RotateInto rotate_into(const char* op, const at::Tensor& cos, const at::Tensor& signed_sin) {
  return [=](const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, double sign,
             const at::Tensor& rotated_query, const at::Tensor& rotated_key, const at::Tensor& value_out) {
    rotate_both(op, query, key, cos, signed_sin, sign, rotated_query, rotated_key);
    value_out.copy_(value);
  };
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_forward_cpu(const at::Tensor& joined, int64_t query_heads,
                                                                 const at::Tensor& cos, const at::Tensor& signed_sin) {
  constexpr const char* op = "bittorch::rotary_embedding_split";
  return rotary_split_forward(op, joined, query_heads, cos, signed_sin, rotate_into(op, cos, signed_sin));
}

at::Tensor split_backward_cpu(const at::Tensor& grad_query, const at::Tensor& grad_key, const at::Tensor& grad_value,
                              const at::Tensor& cos, const at::Tensor& signed_sin) {
  constexpr const char* op = "bittorch::_rotary_embedding_split_backward";
  return rotary_split_backward(op, grad_query, grad_key, grad_value, cos, signed_sin, rotate_into(op, cos, signed_sin));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("rotary_embedding", &forward_cpu);
  m.impl("_rotary_embedding_backward", &backward_cpu);
  m.impl("rotary_embedding_split", &split_forward_cpu);
  m.impl("_rotary_embedding_split_backward", &split_backward_cpu);
}

}  // namespace bittorch::ops
