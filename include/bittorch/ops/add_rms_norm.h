#pragma once

// bittorch::add_rms_norm: a residual add and the RMSNorm of its result in one op, the pair
// every transformer block has twice (schema in src/ops/add_rms_norm/add_rms_norm.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// (output, sum) for input and residual [*, features] (float32, float64, float16, bfloat16;
/// they may differ, as a float32 residual stream and a bfloat16 branch under autocast do):
/// sum = input + residual (in their promoted dtype), output = sum / sqrt(mean(sum^2) + eps) *
/// weight over the last dimension, with float32 arithmetic (float64 for float64); weight
/// [features] is float32 or sum's dtype. The output is in sum's dtype, or in output_dtype
/// (float32, float64, float16, bfloat16) where given: rounded once from the arithmetic's
/// result. Under CUDA autocast output_dtype defaults to the autocast dtype, the one the
/// projections after the norm compute in, so that they need no cast of it (and the backward
/// no cast of their gradients); sum keeps the promoted dtype. Differentiable in input,
/// residual and weight; the backward takes the gradients of both outputs (sum goes on as the
/// residual stream) and reuses the forward's reciprocal RMS.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                             const at::Tensor& weight, double eps = 1e-6,
                                                             std::optional<at::ScalarType> output_dtype = std::nullopt);

/// (output, sum, rstd): the forward, with rstd = 1 / sqrt(mean(sum^2) + eps) per row [*] in
/// float32 (float64), for the backward.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> _add_rms_norm_forward(
    const at::Tensor& input, const at::Tensor& residual, const at::Tensor& weight, double eps,
    std::optional<at::ScalarType> output_dtype = std::nullopt);

/// (grad_sum, grad_weight, grad_sum_narrow): the gradient reaching sum (grad_sum_in, which may
/// be undefined, plus the norm's: rstd * (g - n * mean(g * n)) with n = sum * rstd and g =
/// grad_output * weight; grad_output in the output's dtype or sum's) in sum's dtype; grad_weight
/// = the sum over rows of grad_output * n in weight's dtype; and where narrow_dtype is given
/// and grad_sum wanted, grad_sum rounded to it (the gradient of an operand narrower than the sum, written in the
/// same pass; else undefined). output_mask says which of the first two are wanted.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> _add_rms_norm_backward(
    const at::Tensor& grad_output, const std::optional<at::Tensor>& grad_sum_in, const at::Tensor& sum,
    const at::Tensor& weight, const at::Tensor& rstd, std::array<bool, 2> output_mask,
    std::optional<at::ScalarType> narrow_dtype = std::nullopt);

}  // namespace bittorch::ops
