// bittorch::squared_relu_mlp on the CPU against its formulas in float64 (every dtype, 2-D and
// 3-D inputs, widths of one, no rows), the backward's output mask, Meta shapes and the
// argument checks.

#include "ops/squared_relu_mlp_check.h"
#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::expect_squared_relu_mlp_matches_the_formula;
using bittorch::testing::throws_error_mentioning;

TEST(SquaredReluMlp, MatchesTheFormulaForwardAndBackward) {
  const std::vector<bittorch::testing::SquaredReluMlpCase> cases = {
      {{5, 12}, 20, 7}, {{2, 3, 16}, 24, 16}, {{1, 1}, 1, 1}, {{0, 8}, 4, 8}};
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 1e-5 : 3e-2;
    torch::manual_seed(61);
    for (const auto& c : cases) expect_squared_relu_mlp_matches_the_formula(c, dtype, torch::kCPU, tol);
  }
}

TEST(SquaredReluMlp, KeepsNaN) {
  torch::manual_seed(64);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    bittorch::testing::expect_squared_relu_mlp_keeps_nan({{6, 16}, 24, 8}, dtype, torch::kCPU);
  }
}

TEST(SquaredReluMlp, OutputMaskLeavesTheRestUndefined) {
  torch::manual_seed(62);
  const auto x = torch::randn({4, 6}), up = torch::randn({10, 6}), down = torch::randn({3, 10});
  const auto [output, hidden] = bittorch::ops::_squared_relu_mlp_forward(x, up, down);
  const auto g = torch::randn({4, 3});
  const auto [all_x, all_up, all_down] =
      bittorch::ops::_squared_relu_mlp_backward(g, x, hidden, up, down, {true, true, true});
  for (int wanted = 0; wanted < 3; ++wanted) {
    std::array<bool, 3> mask = {wanted == 0, wanted == 1, wanted == 2};
    const auto [gx, gup, gdown] = bittorch::ops::_squared_relu_mlp_backward(g, x, hidden, up, down, mask);
    EXPECT_EQ(gx.defined(), mask[0]);
    EXPECT_EQ(gup.defined(), mask[1]);
    EXPECT_EQ(gdown.defined(), mask[2]);
    const auto& got = mask[0] ? gx : mask[1] ? gup : gdown;
    const auto& all = mask[0] ? all_x : mask[1] ? all_up : all_down;
    EXPECT_TRUE(torch::equal(got, all)) << wanted;
  }
}

TEST(SquaredReluMlp, MetaTensorsAndErrors) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto [output, hidden] = bittorch::ops::_squared_relu_mlp_forward(
      torch::empty({2, 3, 8}, meta), torch::empty({32, 8}, meta), torch::empty({5, 32}, meta));
  EXPECT_EQ(output.sizes(), torch::IntArrayRef({2, 3, 5}));
  EXPECT_EQ(hidden.sizes(), torch::IntArrayRef({2, 3, 32}));
  const auto [gx, gup, gdown] = bittorch::ops::_squared_relu_mlp_backward(
      torch::empty({2, 3, 5}, meta), torch::empty({2, 3, 8}, meta), hidden, torch::empty({32, 8}, meta),
      torch::empty({5, 32}, meta), {true, false, true});
  EXPECT_EQ(gx.sizes(), torch::IntArrayRef({2, 3, 8}));
  EXPECT_FALSE(gup.defined());
  EXPECT_EQ(gdown.sizes(), torch::IntArrayRef({5, 32}));

  const auto x = torch::randn({2, 8});
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::squared_relu_mlp(x, torch::randn({16, 7}), torch::randn({8, 16}));
      },
      {"bittorch::squared_relu_mlp", "up_weight [hidden, 8]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::squared_relu_mlp(x, torch::randn({16, 8}), torch::randn({8, 15}));
      },
      {"down_weight [out, 16]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::squared_relu_mlp(x, torch::randn({16, 8}, torch::kDouble), torch::randn({8, 16}));
      },
      {"weights of the input's dtype"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::squared_relu_mlp(torch::ones({2, 8}, torch::kInt), torch::ones({16, 8}, torch::kInt),
                                        torch::ones({8, 16}, torch::kInt));
      },
      {"bittorch::squared_relu_mlp"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::_squared_relu_mlp_backward(torch::randn({2, 8}), x, torch::randn({2, 15}), torch::randn({16, 8}),
                                                  torch::randn({8, 16}), {true, true, true});
      },
      {"expected hidden of shape"}));
}

}  // namespace
