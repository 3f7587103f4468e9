// bittorch::rotary_embedding and rotary_embedding_split on the CPU against the rotation from
// its formula (outputs and gradients, every dtype, model and plain layouts, fewer key heads), a
// strided head dimension, the model's unfused rotation, Meta shapes and argument checks.

#include "ops/rotary_embedding_check.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

TEST(RotaryEmbedding, MatchesTheFormulaForwardAndBackward) {
  bittorch::testing::expect_rotary_embedding_matches_the_formula(torch::kCPU);
}

TEST(RotaryEmbedding, SplitMatchesTheFormulaForwardAndBackward) {
  bittorch::testing::expect_rotary_embedding_split_matches_the_formula(torch::kCPU);
}

// The split's rotation is rotary_embedding's on the joined tensor's heads, bit for bit.
TEST(RotaryEmbedding, SplitEqualsTheRotationOfTheJoinedHeads) {
  torch::manual_seed(5);
  const auto [cos, sin] = bittorch::nn::functional::rotary_tables(6, 8, 10000.0, torch::kCPU);
  const auto joined = torch::randn({2, 6, (4 + 2 * 2) * 8}).to(torch::kBFloat16);
  const auto heads = [&](int64_t first, int64_t count) {
    return joined.narrow(2, first * 8, count * 8).view({2, 6, count, 8}).transpose(1, 2);
  };
  const auto [q, k, v] = bittorch::ops::rotary_embedding_split(joined, 4, cos, sin);
  const auto [rq, rk] = bittorch::ops::rotary_embedding(heads(0, 4), heads(4, 2), cos, sin);
  EXPECT_TRUE(torch::equal(q, rq));
  EXPECT_TRUE(torch::equal(k, rk));
  EXPECT_TRUE(torch::equal(v, heads(6, 2)));
}

TEST(RotaryEmbedding, SplitMetaTensorsAndErrors) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto table = torch::empty({5, 4}, meta);
  const auto [q, k, v] = bittorch::ops::rotary_embedding_split(torch::empty({2, 5, 4 * 5}, meta), 3, table, table);
  EXPECT_EQ(q.sizes(), torch::IntArrayRef({2, 3, 5, 4}));
  EXPECT_EQ(k.sizes(), torch::IntArrayRef({2, 1, 5, 4}));
  EXPECT_EQ(v.strides(), k.strides());
  EXPECT_TRUE(q.transpose(1, 2).is_contiguous());
  const auto grad = bittorch::ops::_rotary_embedding_split_backward(q, k, v, table, table);
  EXPECT_EQ(grad.sizes(), torch::IntArrayRef({2, 5, 20}));
  const auto x = torch::randn({1, 3, 24});
  const auto cpu_table = torch::ones({3, 4});
  // 24 = 6 heads of 4: 2 query heads leave 4, two key and two value heads; 3 leave an odd 3.
  EXPECT_NO_THROW(bittorch::ops::rotary_embedding_split(x, 2, cpu_table, cpu_table));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding_split(x, 3, cpu_table, cpu_table); },
                                      {"bittorch::rotary_embedding_split", "3 query heads"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding_split(x, 6, cpu_table, cpu_table); },
                                      {"bittorch::rotary_embedding_split", "6 query heads"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::rotary_embedding_split(x[0], 2, cpu_table, cpu_table); },
                                      {"bittorch::rotary_embedding_split", "[batch, positions, width]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::rotary_embedding_split(x, 2, torch::ones({4, 4}), cpu_table);
      },
      {"bittorch::rotary_embedding_split", "cos"}));
  const auto g = torch::randn({1, 2, 3, 4});
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::ops::_rotary_embedding_split_backward(g, g, g.narrow(1, 0, 1), cpu_table, cpu_table); },
      {"bittorch::_rotary_embedding_split_backward", "grad_value like grad_key"}));
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
