#include "ops/linear_cross_entropy/linear_cross_entropy.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::linear_cross_entropy";

at::ScalarType loss_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_meta(const at::Tensor& input, const at::Tensor& weight,
                                                            const at::Tensor& target, int64_t /*ignore_index*/,
                                                            int64_t chunk_rows, bool compute_grad) {
  check_linear_cross_entropy_args(kOp, input, weight, target, chunk_rows);
  const auto loss = at::empty({}, input.options().dtype(loss_dtype(input)));
  if (!compute_grad) return {loss, at::Tensor(), at::Tensor()};
  return {loss, at::empty_like(input), at::empty_like(weight)};
}

at::Tensor loss_meta(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                     int64_t /*ignore_index*/, int64_t chunk_rows) {
  check_linear_cross_entropy_args(kOp, input, weight, target, chunk_rows);
  return at::empty({}, input.options().dtype(loss_dtype(input)));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("_linear_cross_entropy_forward", &forward_meta);
  m.impl("linear_cross_entropy", &loss_meta);
}

}  // namespace bittorch::ops
