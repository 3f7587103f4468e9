// bittorch::add_rms_norm_packed_linear as its two ops: the CPU's and Meta's implementation.

#include "ops/add_rms_norm_packed_linear/add_rms_norm_packed_linear.h"

#include <bittorch/ops/add_rms_norm.h>
#include <bittorch/ops/packed_ternary_linear.h>

#include <torch/library.h>

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> add_rms_norm_packed_linear_composite(
    const at::Tensor& input, const at::Tensor& residual, const at::Tensor& norm_weight, double eps,
    const at::Tensor& packed, const at::Tensor& scale, const std::optional<at::Tensor>& bias, int64_t in_features,
    c10::string_view activation_format, c10::string_view epilogue) {
  check_add_rms_norm_packed_linear_args("bittorch::add_rms_norm_packed_linear", input, residual, norm_weight, eps,
                                        packed, scale, bias, in_features, activation_format, epilogue);
  auto [normed, sum] = add_rms_norm(input, residual, norm_weight, eps);
  auto output = packed_ternary_linear(normed, packed, scale, bias, in_features, activation_format, "auto", epilogue);
  return {std::move(output), std::move(sum)};
}

}  // namespace bittorch::ops

TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("add_rms_norm_packed_linear", &bittorch::ops::add_rms_norm_packed_linear_composite);
}
