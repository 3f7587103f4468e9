#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace bittorch::ops {

/// The shapes and dtypes of bittorch::add_rms_norm's arguments (see
/// include/bittorch/ops/add_rms_norm.h); returns the dtype of sum (and of the output unless
/// output_dtype names another).
at::ScalarType check_add_rms_norm_args(const char* op, const at::Tensor& input, const at::Tensor& residual,
                                       const at::Tensor& weight, double eps,
                                       std::optional<at::ScalarType> output_dtype);

/// The backward's arguments against the forward's shapes (grad_output in any floating dtype:
/// the sum's, or the output's where output_dtype made it another).
void check_add_rms_norm_backward_args(const char* op, const at::Tensor& grad_output,
                                      const std::optional<at::Tensor>& grad_sum_in, const at::Tensor& sum,
                                      const at::Tensor& weight, const at::Tensor& rstd,
                                      std::optional<at::ScalarType> narrow_dtype);

/// The weight's gradient, the sum over rows of grad_output * sum * rstd, in weight's dtype (an
/// ATen reduction every backend shares).
at::Tensor add_rms_norm_weight_grad(const at::Tensor& grad_output, const at::Tensor& sum, const at::Tensor& weight,
                                    const at::Tensor& rstd);

/// float64 for float64 sums, else float32: the arithmetic's and rstd's dtype.
at::ScalarType add_rms_norm_accumulate_dtype(at::ScalarType sum_dtype);

}  // namespace bittorch::ops
