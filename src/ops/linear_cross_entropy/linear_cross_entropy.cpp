// bittorch::linear_cross_entropy: schema, typed entries and argument checks.

#include "ops/linear_cross_entropy/linear_cross_entropy.h"

#include <bittorch/ops/linear_cross_entropy.h>

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // A classifier's projection (no bias) and its mean cross-entropy, in chunks of rows.
  m.def(
      "linear_cross_entropy(Tensor input, Tensor weight, Tensor target, int ignore_index=-100, int chunk_rows=0) "
      "-> Tensor");
  // The loss and (compute_grad) its gradients, made chunk by chunk in one pass.
  m.def(
      "_linear_cross_entropy_forward(Tensor input, Tensor weight, Tensor target, int ignore_index, int chunk_rows, "
      "bool compute_grad) -> (Tensor loss, Tensor grad_input, Tensor grad_weight)");
}

namespace bittorch::ops {

at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                int64_t ignore_index, int64_t chunk_rows) {
  static const auto op = find_op<decltype(linear_cross_entropy)>("bittorch::linear_cross_entropy");
  return op.call(input, weight, target, ignore_index, chunk_rows);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> _linear_cross_entropy_forward(const at::Tensor& input,
                                                                             const at::Tensor& weight,
                                                                             const at::Tensor& target,
                                                                             int64_t ignore_index, int64_t chunk_rows,
                                                                             bool compute_grad) {
  static const auto op = find_op<decltype(_linear_cross_entropy_forward)>("bittorch::_linear_cross_entropy_forward");
  return op.call(input, weight, target, ignore_index, chunk_rows, compute_grad);
}

void check_linear_cross_entropy_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                     const at::Tensor& target, int64_t chunk_rows) {
  check_input(op, input);
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": expected a float32, float64, float16 or bfloat16 input, but got ", dtype);
  TORCH_CHECK(weight.defined() && weight.dim() == 2 && weight.size(0) >= 1 && weight.size(1) == input.size(-1), op,
              ": expected weight [classes, ", input.size(-1), "], but got ",
              weight.defined() ? weight.sizes() : at::IntArrayRef{});
  TORCH_CHECK(weight.scalar_type() == dtype && weight.device() == input.device(), op, ": weight (",
              weight.scalar_type(), " on ", weight.device(), ") must share the input's dtype and device (", dtype,
              " on ", input.device(), ")");
  TORCH_CHECK(target.defined() && target.scalar_type() == at::kLong && target.device() == input.device(), op,
              ": expected int64 targets on ", input.device());
  TORCH_CHECK(target.sizes() == input.sizes().slice(0, input.dim() - 1), op, ": expected targets of shape ",
              input.sizes().slice(0, input.dim() - 1), " (the input's without its last dimension), but got ",
              target.sizes());
  TORCH_CHECK(chunk_rows >= 0, op, ": chunk_rows must be >= 0 (0: automatic), not ", chunk_rows);
}

int64_t linear_cross_entropy_chunk(int64_t chunk_rows, int64_t rows, int64_t classes) {
  constexpr int64_t kChunkElements = int64_t{1} << 24;  // 64 MiB of float32 logits
  const int64_t chunk = chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, kChunkElements / classes);
  return std::max<int64_t>(1, std::min(chunk, rows));
}

}  // namespace bittorch::ops
