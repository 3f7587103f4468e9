// bittorch::squared_relu against its formula in float64 (max(x, 0)^2 and 2 * max(x, 0) * grad),
// every dtype, a strided input, zeros and negative inputs; Meta shapes; argument checks.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

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
                                      {"grad_output of the input's shape"}));
}

}  // namespace
