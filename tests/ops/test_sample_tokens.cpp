// bittorch::sample_tokens on the CPU: greedy picks, NaN rows, the frequencies of many draws
// against the formula, determinism for a seed, shapes on Meta, bad input; and the test's own
// Philox4x32-10 against the published known answers (the CUDA test's reference).

#include "ops/sample_tokens_check.h"
#include "reference.h"

#include <ATen/CPUGeneratorImpl.h>
#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace bt = bittorch::testing;

TEST(SampleTokens, GreedyPicksTheFirstLargest) {
  bt::expect_greedy_picks_the_first_largest(torch::kCPU);
}

TEST(SampleTokens, NanRowsGiveTheirFirstNan) {
  bt::expect_nan_rows_give_their_first_nan(torch::kCPU);
}

TEST(SampleTokens, DrawsFollowTheTemperedSoftmaxOfTheTopK) {
  bt::expect_draws_follow_the_tempered_top_k_softmax(torch::kCPU, at::make_generator<at::CPUGeneratorImpl>(7));
}

TEST(SampleTokens, TinyTemperaturesAndInfiniteLogitsDrawTheLargest) {
  bt::expect_tiny_temperatures_and_infinite_logits_draw_the_largest(torch::kCPU,
                                                                    at::make_generator<at::CPUGeneratorImpl>(8));
}

TEST(SampleTokens, TheSameSeedDrawsTheSameTokens) {
  torch::manual_seed(122);
  const auto logits = torch::randn({16, 100});
  const auto draw = [&](uint64_t seed) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    return bittorch::ops::sample_tokens(logits, 0.9, 10, generator);
  };
  EXPECT_TRUE(torch::equal(draw(5), draw(5)));
  EXPECT_FALSE(torch::equal(draw(5), draw(6)));
}

TEST(SampleTokens, MetaGivesTheShape) {
  const auto tokens = bittorch::ops::sample_tokens(torch::empty({4, 7}, torch::device(torch::kMeta)), 0.5, 3);
  EXPECT_EQ(tokens.sizes(), torch::IntArrayRef({4}));
  EXPECT_EQ(tokens.scalar_type(), torch::kLong);
  EXPECT_TRUE(tokens.is_meta());
}

TEST(SampleTokens, BadInputIsAnErrorNamingIt) {
  const auto logits = torch::randn({2, 5});
  EXPECT_TRUE(bt::throws_error_mentioning([&] { bittorch::ops::sample_tokens(logits.view({10}), 1.0, 0); },
                                          {"logits [batch, vocab]", "[10]"}));
  EXPECT_TRUE(bt::throws_error_mentioning(
      [&] {
        bittorch::ops::sample_tokens(torch::randn({2, 0}), 1.0, 0);
      },
      {"logits [batch, vocab]"}));
  EXPECT_TRUE(bt::throws_error_mentioning(
      [&] {
        bittorch::ops::sample_tokens(torch::ones({2, 5}, torch::kLong), 1.0, 0);
      },
      {"logits"}));
  EXPECT_TRUE(bt::throws_error_mentioning([&] { bittorch::ops::sample_tokens(logits, -1.0, 0); },
                                          {"temperature must be finite and >= 0"}));
  EXPECT_TRUE(bt::throws_error_mentioning(
      [&] { bittorch::ops::sample_tokens(logits, std::numeric_limits<double>::infinity(), 0); }, {"temperature"}));
  EXPECT_TRUE(
      bt::throws_error_mentioning([&] { bittorch::ops::sample_tokens(logits, 1.0, -3); }, {"top_k must be >= 0"}));
}

// Known answers of Philox4x32-10 published with Random123 (its kat_vectors file): counter,
// key -> output.
TEST(SampleTokens, TheTestsPhiloxGivesTheKnownAnswers) {
  using Words = std::array<uint32_t, 4>;
  EXPECT_EQ(bt::philox4x32_10({0, 0, 0, 0}, {0, 0}), (Words{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(bt::philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (Words{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(bt::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (Words{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

}  // namespace
