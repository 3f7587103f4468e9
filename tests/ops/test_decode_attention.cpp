// bittorch::decode_attention on the CPU against the reference from the formulas, and its
// argument checks.

#include "ops/decode_attention_check.h"
#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

TEST(DecodeAttention, MatchesTheReference) {
  torch::manual_seed(70);
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const auto& c : bittorch::testing::decode_attention_cases(/*long_contexts=*/false)) {
      bittorch::testing::expect_decode_attention_matches_reference(torch::kCPU, dtype, c);
    }
  }
}

TEST(DecodeAttention, BadArgumentsAreErrorsNamingThem) {
  const auto q = torch::randn({1, 2, 4}), cache = torch::zeros({1, 2, 8, 4});
  const auto [cos, sin] = bittorch::testing::formula_rotary_tables(8, 4, torch::kFloat);
  const auto call = [&](const torch::Tensor& query, const torch::Tensor& key, torch::Tensor keys, int64_t position,
                        const torch::Tensor& cos_table) {
    auto values = torch::zeros_like(keys);
    return bittorch::ops::decode_attention(query, key, query, keys, values, torch::full({1}, position, torch::kLong),
                                           cos_table, sin);
  };
  EXPECT_TRUE(throws_error_mentioning([&] { call(q, q, cache.clone(), 8, cos); }, {"position 8", "context of 8"}));
  EXPECT_TRUE(throws_error_mentioning([&] { call(q, q, cache.clone(), -1, cos); }, {"position -1"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        call(torch::randn({1, 2, 3}), torch::randn({1, 2, 3}), cache, 0, cos);
      },
      {"even head_size", "[1, 2, 3]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { call(q, q.to(torch::kHalf), cache.clone(), 0, cos); }, {"key", "dtype"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        call(q, q, torch::zeros({1, 3, 8, 4}), 0, cos);
      },
      {"key_cache [1, 2, context, 4]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        call(q, q, torch::zeros({1, 2, 4, 8}).transpose(2, 3), 0, cos);
      },
      {"not contiguous"}));
  EXPECT_TRUE(throws_error_mentioning([&] { call(q, q, cache.clone(), 0, cos.narrow(0, 0, 7)); }, {"cos [>= 8, 4]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { call(q, q, cache.clone(), 0, cos.to(torch::kDouble)); }, {"cos", "Float"}));
  auto keys = cache.clone(), values = cache.clone();
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::ops::decode_attention(q, q, q, keys, values, torch::zeros({1}), cos, sin); },
      {"position to be a contiguous int64 tensor [1] or [1]"}));
  // One position per sequence: as many as the batch, each in range.
  const auto q2 = torch::randn({2, 2, 4});
  auto keys2 = torch::zeros({2, 2, 8, 4}), values2 = torch::zeros_like(keys2);
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::ops::decode_attention(q2, q2, q2, keys2, values2, torch::zeros({3}, torch::kLong), cos, sin); },
      {"[1] or [2]", "[3]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::decode_attention(q2, q2, q2, keys2, values2, torch::tensor({3, 8}, torch::kLong), cos, sin);
      },
      {"position 8"}));
}

}  // namespace
