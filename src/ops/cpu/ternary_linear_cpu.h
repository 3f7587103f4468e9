#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace bittorch::ops {

/// The backward of the straight-through estimator from the forward's ternary operand
/// (codes * scale in the activations' dtype): grad_x = grad_y @ operand,
/// grad_w = scale[:, None] * (grad_y^T @ x), grad_b = sum of grad_y. Device-agnostic ATen
/// code: the CPU and the CUDA backends both use it (on CUDA its products are cuBLAS calls).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_reference(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask);

}  // namespace bittorch::ops
