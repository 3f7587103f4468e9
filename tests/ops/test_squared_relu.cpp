// bittorch::squared_relu against its formula in float64 (max(x, 0)^2 and 2 * max(x, 0) * grad,
// the backward from the saved output), every dtype, a strided input, zeros and negative
// inputs, NaN; the output is the tensor saved, not the input; Meta shapes; argument checks.
// squared_relu_quantized: the same output and gradient, with quantize_activations' bits of it.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

using bittorch::testing::throws_error_mentioning;

TEST(SquaredRelu, MatchesTheFormulaForwardAndBackward) {
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    torch::manual_seed(41);
    // A strided view (every other column) with exact zeros among the values.
    auto base = torch::randn({6, 34}, torch::kDouble);
    base.index_put_({torch::indexing::Slice(), 0}, 0.0);
    const auto x = base.to(dtype).slice(1, 0, 34, 2).detach().requires_grad_();
    const auto y = bittorch::ops::squared_relu(x);
    const auto g = torch::randn(y.sizes(), torch::kDouble).to(dtype);
    y.backward(g);
    const auto xd = x.detach().to(torch::kDouble);
    const auto positive = xd.clamp_min(0);
    const double tol = dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 1e-6 : 1e-2;
    const std::string what = c10::toString(dtype);
    EXPECT_EQ(y.scalar_type(), dtype) << what;
    EXPECT_TRUE(torch::allclose(y.to(torch::kDouble), positive * positive, tol, tol)) << what;
    EXPECT_TRUE(torch::allclose(x.grad().to(torch::kDouble), 2 * positive * g.to(torch::kDouble), tol, tol)) << what;
  }
}

TEST(SquaredRelu, MetaTensorsAndErrors) {
  const auto y = bittorch::ops::squared_relu(torch::empty({2, 5}, torch::TensorOptions().device(torch::kMeta)));
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 5}));
  EXPECT_TRUE(throws_error_mentioning([] { bittorch::ops::squared_relu(torch::ones({3}, torch::kInt)); },
                                      {"bittorch::squared_relu"}));
  EXPECT_TRUE(throws_error_mentioning([] { bittorch::ops::_squared_relu_backward(torch::ones({2}), torch::ones({3})); },
                                      {"grad_output of the output's shape"}));
}

// The backward keeps the output (which the next layer saves anyway), not the input: changing
// the input in place after the forward leaves the gradient alone; changing the output is an
// error, not a silently wrong gradient. NaN stays NaN.
TEST(SquaredRelu, SavesTheOutputNotTheInput) {
  auto leaf = torch::tensor(std::vector<double>{-1.0, 0.5, 2.0, std::nan("")}, torch::kDouble).requires_grad_();
  auto x = leaf * 1.0;
  const auto y = bittorch::ops::squared_relu(x);
  {
    const torch::NoGradGuard no_grad;
    x.fill_(7.0);
  }
  y.sum().backward();
  const auto grad = leaf.grad();
  EXPECT_EQ(grad[0].item<double>(), 0.0);
  EXPECT_EQ(grad[1].item<double>(), 1.0);
  EXPECT_EQ(grad[2].item<double>(), 4.0);
  EXPECT_TRUE(std::isnan(grad[3].item<double>()));
  auto z = bittorch::ops::squared_relu(leaf * 1.0);
  {
    const torch::NoGradGuard no_grad;
    z.mul_(2.0);
  }
  EXPECT_TRUE(throws_error_mentioning([&] { z.sum().backward(); }, {"modified by an inplace operation"}));
}

// The output is the formula's (exact: a square of a 16-bit or float32 value rounded once), the
// 8-bit rows are quantize_activations' of that output, bit for bit, and the gradient flows
// through the output only: rows of all-negative values (the scale's floor), NaN and +-Inf rows,
// a strided 3-D input, both formats.
TEST(SquaredReluQuantized, IsTheActivationThenItsQuantization) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const std::string format : {"int8", "float8_e4m3"}) {
      torch::manual_seed(42);
      auto base = torch::randn({2, 5, 66}, torch::kDouble);
      base.index_put_({0, 0}, -torch::rand({66}, torch::kDouble) - 0.1);  // all negative
      base.index_put_({0, 1, 4}, std::nan(""));                           // even columns: the strided view's
      base.index_put_({1, 2, 8}, std::numeric_limits<double>::infinity());
      const auto x = base.to(dtype).slice(2, 0, 66, 2).detach().requires_grad_();
      const auto [y, values, scale] = bittorch::ops::squared_relu_quantized(x, format);
      const std::string what = std::string(c10::toString(dtype)) + ", " + format;
      const auto positive = x.detach().to(torch::kDouble).clamp_min(0);
      EXPECT_TRUE(torch::equal(y.nan_to_num(-1), (positive * positive).to(dtype).nan_to_num(-1))) << what;
      EXPECT_TRUE(y.isnan().any().item<bool>() && y.isinf().any().item<bool>()) << what;
      const auto [expected_values, expected_scale] = bittorch::ops::quantize_activations(y.detach(), format);
      EXPECT_TRUE(torch::equal(values.view(torch::kByte), expected_values.view(torch::kByte))) << what;
      EXPECT_TRUE(torch::equal(scale.isnan(), expected_scale.isnan())) << what;
      EXPECT_TRUE(torch::equal(scale.nan_to_num(0), expected_scale.nan_to_num(0))) << what;
      EXPECT_FALSE(values.requires_grad() || scale.requires_grad()) << what;
      const auto g = torch::randn(y.sizes(), torch::kDouble).to(dtype);
      y.backward(g);
      const auto expected_grad = (2 * positive * g.to(torch::kDouble)).to(dtype);
      EXPECT_TRUE(torch::allclose(x.grad().nan_to_num(0), expected_grad.nan_to_num(0), 1e-2, 1e-2)) << what;
    }
  }
}

TEST(SquaredReluQuantized, MetaTensorsAndErrors) {
  const auto [y, values, scale] = bittorch::ops::squared_relu_quantized(
      torch::empty({2, 3, 5}, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kMeta)), "float8_e4m3");
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 3, 5}));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(values.scalar_type(), torch::kFloat8_e4m3fn);
  EXPECT_EQ(scale.sizes(), torch::IntArrayRef({2, 3, 1}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        bittorch::ops::squared_relu_quantized(torch::ones({2, 3}), "none");
      },
      {"bittorch::squared_relu_quantized", "none"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        bittorch::ops::squared_relu_quantized(torch::ones({2, 3}, torch::kDouble), "int8");
      },
      {"bittorch::squared_relu_quantized", "Double"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        bittorch::ops::squared_relu_quantized(torch::ones({2, 3}), "int4");
      },
      {"int4"}));
}

}  // namespace
