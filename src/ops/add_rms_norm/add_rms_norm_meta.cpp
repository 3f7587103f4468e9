#include "ops/add_rms_norm/add_rms_norm.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::add_rms_norm";

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_meta(const at::Tensor& input, const at::Tensor& residual,
                                                            const at::Tensor& weight, double eps,
                                                            std::optional<at::ScalarType> output_dtype) {
  const auto sum_dtype = check_add_rms_norm_args(kOp, input, residual, weight, eps, output_dtype);
  const auto options = input.options().dtype(sum_dtype);
  return {at::empty(input.sizes(), options.dtype(output_dtype.value_or(sum_dtype))), at::empty(input.sizes(), options),
          at::empty(input.sizes().slice(0, input.dim() - 1), options.dtype(add_rms_norm_accumulate_dtype(sum_dtype)))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_meta(const at::Tensor& grad_output,
                                                             const std::optional<at::Tensor>& grad_sum_in,
                                                             const at::Tensor& sum, const at::Tensor& weight,
                                                             const at::Tensor& rstd, std::array<bool, 2> output_mask,
                                                             std::optional<at::ScalarType> narrow_dtype) {
  check_add_rms_norm_backward_args(kOp, grad_output, grad_sum_in, sum, weight, rstd, narrow_dtype);
  return {output_mask[0] ? at::empty_like(sum) : at::Tensor(), output_mask[1] ? at::empty_like(weight) : at::Tensor(),
          output_mask[0] && narrow_dtype ? at::empty_like(sum, sum.options().dtype(*narrow_dtype)) : at::Tensor()};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("_add_rms_norm_forward", &forward_meta);
  m.impl("_add_rms_norm_backward", &backward_meta);
}

}  // namespace bittorch::ops
