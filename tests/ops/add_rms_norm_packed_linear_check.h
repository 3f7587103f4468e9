#pragma once

// The float64 reference of bittorch::add_rms_norm_packed_linear, from the formulas, for the
// CPU and CUDA tests.

#include <bittorch/ops/quantize_activations.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>

namespace bittorch::testing {

struct NormedProjection {
  torch::Tensor output, sum;  // float64
};

/// sum = x + r rounded to x's dtype (what the op returns); normed = sum / sqrt(mean(sum^2) +
/// eps) * w, rounded to x's dtype (what the projection reads); output = normed @ (codes *
/// scale)^T + bias, then max(y, 0)^2 with squared_relu. codes int8 [out, in] of -1/0/+1,
/// scale [out] or [1], bias [out] or undefined.
inline NormedProjection reference_add_rms_norm_packed_linear(const torch::Tensor& x, const torch::Tensor& r,
                                                             const torch::Tensor& w, double eps,
                                                             const torch::Tensor& codes, const torch::Tensor& scale,
                                                             const torch::Tensor& bias, bool squared_relu) {
  const auto dtype = x.scalar_type();
  const auto sum = (x.to(torch::kDouble) + r.to(torch::kDouble)).to(dtype).to(torch::kDouble);
  const auto rstd = 1.0 / (sum.square().mean(-1, true) + eps).sqrt();
  const auto normed = (sum * rstd * w.to(torch::kDouble)).to(dtype).to(torch::kDouble);
  auto y = torch::matmul(normed, codes.to(torch::kDouble).t()) * scale.to(torch::kDouble);
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  if (squared_relu) y = torch::clamp_min(y, 0).square();
  return {y, sum};
}

/// As reference_add_rms_norm_packed_linear, with the normed rows quantized to `format`
/// ("int8" | "float8_e4m3") by the CPU's quantize_activations before the product: output =
/// (values @ codes^T) * row_scale * scale + bias.
inline NormedProjection reference_add_rms_norm_quantized_linear(const torch::Tensor& x, const torch::Tensor& r,
                                                                const torch::Tensor& w, double eps,
                                                                const torch::Tensor& codes, const torch::Tensor& scale,
                                                                const torch::Tensor& bias, bool squared_relu,
                                                                const std::string& format) {
  const auto dtype = x.scalar_type();
  const auto sum = (x.to(torch::kDouble) + r.to(torch::kDouble)).to(dtype).to(torch::kDouble);
  const auto rstd = 1.0 / (sum.square().mean(-1, true) + eps).sqrt();
  const auto normed = (sum * rstd * w.to(torch::kDouble)).to(dtype);
  const auto [values, row_scale] = ops::quantize_activations(normed, format);
  auto y = torch::matmul(values.to(torch::kDouble), codes.to(torch::kDouble).t()) * row_scale.to(torch::kDouble) *
           scale.to(torch::kDouble);
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  if (squared_relu) y = torch::clamp_min(y, 0).square();
  return {y, sum};
}

/// Expects `actual` within tolerance * max(1, max |expected|) of `expected`.
inline void expect_near_reference(const torch::Tensor& actual, const torch::Tensor& expected, double tolerance,
                                  const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  if (expected.numel() == 0) return;
  const double error = (actual.cpu().to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(error, tolerance * std::max(1.0, expected.abs().max().item<double>())) << what << ": error " << error;
}

}  // namespace bittorch::testing
