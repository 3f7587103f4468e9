// bittorch::rotary_embedding on the CPU against the rotation from its formula (outputs and
// gradients, every dtype, model and plain layouts, fewer key heads), a strided head dimension,
// the model's unfused rotation, Meta shapes and argument checks.

#include "ops/rotary_embedding_check.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

TEST(RotaryEmbedding, MatchesTheFormulaForwardAndBackward) {
  bittorch::testing::expect_rotary_embedding_matches_the_formula(torch::kCPU);
}

TEST(RotaryEmbedding, TakesAStridedHeadDimensionAndEqualsTheUnfusedRotation) {
  torch::manual_seed(3);
  const auto [cos, sin] = bittorch::nn::functional::rotary_tables(6, 8, 10000.0, torch::kCPU);
  const auto q = torch::randn({2, 3, 6, 16}).slice(3, 0, 16, 2);  // every other element
  const auto k = torch::randn({2, 1, 6, 8});
  const auto [rq, rk] = bittorch::ops::rotary_embedding(q, k, cos, sin);
  EXPECT_TRUE(rq.is_contiguous());
  EXPECT_TRUE(torch::allclose(rq, bittorch::nn::functional::apply_rotary(q, cos, sin), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(rk, bittorch::nn::functional::apply_rotary(k, cos, sin), 1e-6, 1e-6));
}

TEST(RotaryEmbedding, MetaTensorsAndErrors) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto q = torch::empty({2, 5, 3, 4}, meta).transpose(1, 2);
  const auto [rq, rk] = bittorch::ops::rotary_embedding(q, torch::empty({2, 1, 5, 4}, meta), torch::empty({5, 4}, meta),
                                                        torch::empty({5, 4}, meta));
  EXPECT_EQ(rq.sizes(), q.sizes());
  EXPECT_EQ(rq.strides(), q.strides());
  EXPECT_EQ(rk.sizes(), torch::IntArrayRef({2, 1, 5, 4}));
  const auto x = torch::randn({1, 2, 3, 4});
  const auto table = torch::ones({3, 4});
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding(x, x.to(torch::kDouble), table, table); },
                                      {"bittorch::rotary_embedding", "key of the query's dtype"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding(x[0], x[0], table, table); },
                                      {"[batch, heads, positions, head_size]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::rotary_embedding(torch::ones({1, 1, 3, 5}), torch::ones({1, 1, 3, 5}), table, table);
      },
      {"head size must be even"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::rotary_embedding(x, x, torch::ones({4, 4}), table);
      },
      {"expected cos [3, 4]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding(x, x.narrow(2, 0, 2), table, table); },
                                      {"query's batch, positions and head size"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::ops::_rotary_embedding_backward(x.to(torch::kInt), x.to(torch::kInt), table, table); },
      {"bittorch::_rotary_embedding_backward", "floating point"}));
}

}  // namespace
