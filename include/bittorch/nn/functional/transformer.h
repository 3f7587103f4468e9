#pragma once

// The transformer's elementwise pieces, as functions: RMSNorm and rotary position embeddings.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace bittorch::nn::functional {

/// x / sqrt(mean(x^2 over the last dimension) + eps) * weight.
BITTORCH_API at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// The rotary tables, [positions, head_size] in float64 on `device`: with the angle
/// a = p * base^(-2i / head_size) of position p and pair i < head_size / 2 (elements i and
/// i + head_size / 2 rotate together), cos = (cos a, cos a) and signed_sin = (-sin a, sin a).
BITTORCH_API std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t positions, int64_t head_size, double base,
                                                             c10::Device device);

/// x [..., T, head_size] with rotary embeddings: for the halves x1, x2 of x,
/// (x1 cos a - x2 sin a, x2 cos a + x1 sin a), with cos, signed_sin the [T, head_size] rows of
/// rotary_tables (cast to x's dtype).
BITTORCH_API at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& signed_sin);

}  // namespace bittorch::nn::functional
