#pragma once

// The transformer's elementwise pieces, as functions: RMSNorm and rotary position embeddings.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace bittorch::nn::functional {

/// x / sqrt(mean(x^2 over the last dimension) + eps) * weight.
BITTORCH_API at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// The rotary tables cos and sin, [positions, head_size] in float64 on `device`: for position
/// p and i < head_size / 2 the angle p * base^(-2i / head_size), in both halves (i and
/// i + head_size / 2 rotate together).
BITTORCH_API std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t positions, int64_t head_size, double base,
                                                             c10::Device device);

/// x [..., T, head_size] with rotary embeddings: x * cos + rotate_half(x) * sin, where
/// rotate_half(x) = cat(-x2, x1) of x's halves and cos, sin are [T, head_size] rows of
/// rotary_tables (cast to x's dtype).
BITTORCH_API at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace bittorch::nn::functional
