#pragma once

// bittorch::sample_tokens's cases for either device (greedy picks, NaN rows, the frequencies
// of many draws), and Philox4x32-10 written from its definition: the reference the CUDA
// kernel's draws are checked against.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace bittorch::testing {

/// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2,
/// 3", SC 2011): ten rounds of two 32 x 32 -> 64-bit products, the key bumped by the Weyl
/// constants between rounds.
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += 0x9E3779B9U;
      key[1] += 0xBB67AE85U;
    }
    const uint64_t product0 = uint64_t{0xD2511F53U} * counter[0];
    const uint64_t product1 = uint64_t{0xCD9E8D57U} * counter[2];
    counter = {static_cast<uint32_t>(product1 >> 32) ^ counter[1] ^ key[0], static_cast<uint32_t>(product1),
               static_cast<uint32_t>(product0 >> 32) ^ counter[3] ^ key[1], static_cast<uint32_t>(product0)};
  }
  return counter;
}

/// The first index of the largest of `values` (NaN-free).
inline int64_t first_largest(const std::vector<double>& values) {
  int64_t best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[static_cast<size_t>(best)]) best = static_cast<int64_t>(i);
  }
  return best;
}

/// Temperature 0 picks the first of the largest logits, compared in the logits' own precision
/// (float64 logits that float32 cannot tell apart included).
inline void expect_greedy_picks_the_first_largest(torch::Device device) {
  torch::manual_seed(120);
  for (const auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf, torch::kBFloat16}) {
    auto logits = torch::randn({6, 300}, torch::kDouble);
    logits[2][9] = logits[2][200] = logits[2].max().item<double>() + 1;  // a tie: the first wins
    const auto host = logits.to(dtype).to(torch::kDouble);               // the values the op sees
    std::vector<int64_t> want;
    for (int64_t row = 0; row < host.size(0); ++row) {
      const auto* data = host[row].data_ptr<double>();
      want.push_back(first_largest(std::vector<double>(data, data + host.size(1))));
    }
    const auto got = ops::sample_tokens(logits.to(dtype).to(device), 0.0, 0);
    EXPECT_EQ(got.device().type(), device.type());
    EXPECT_TRUE(torch::equal(got.cpu(), torch::tensor(want))) << dtype << ": " << got;
    EXPECT_EQ(want[2], 9);
  }
  const auto close = torch::tensor({{1.0, 1.0 + 1e-12, 1.0}}, torch::kDouble).to(device);
  EXPECT_EQ(ops::sample_tokens(close, 0.0, 0).item<int64_t>(), 1);
}

/// A row holding NaN gives its first NaN's index, greedy or sampled; the other rows sample.
inline void expect_nan_rows_give_their_first_nan(torch::Device device) {
  torch::manual_seed(121);
  auto logits = torch::randn({3, 50});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  logits[1][7] = logits[1][30] = nan;
  logits[2][0] = nan;
  for (const auto& [temperature, top_k] : std::vector<std::pair<double, int64_t>>{{0.0, 0}, {0.8, 0}, {0.8, 5}}) {
    const auto got = ops::sample_tokens(logits.to(device), temperature, top_k).cpu();
    EXPECT_EQ(got[1].item<int64_t>(), 7) << temperature << " " << top_k;
    EXPECT_EQ(got[2].item<int64_t>(), 0) << temperature << " " << top_k;
    EXPECT_TRUE(got[0].item<int64_t>() >= 0 && got[0].item<int64_t>() < 50);
  }
}

/// Temperatures so small that logits / T overflow float32 draw the largest logit, and logits
/// of +inf share the draws among themselves: the scores are (x - max) / T, 0 at the largest.
inline void expect_tiny_temperatures_and_infinite_logits_draw_the_largest(torch::Device device,
                                                                          at::Generator generator) {
  torch::manual_seed(125);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    const auto logits = (10 * torch::randn({64, 1000})).to(dtype);
    const auto largest = std::get<0>(logits.max(-1));
    for (const double temperature : {1e-30, 1e-38, 1e-45}) {
      for (const int64_t top_k : {int64_t{0}, int64_t{5}}) {
        const auto got = ops::sample_tokens(logits.to(device), temperature, top_k, generator).cpu();
        // bfloat16 rows may hold the largest twice: either is right.
        EXPECT_TRUE(torch::equal(logits.gather(1, got.unsqueeze(1)).squeeze(1), largest))
            << dtype << " temperature " << temperature << " top_k " << top_k;
      }
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  auto logits = torch::randn({2000, 10});
  logits.select(1, 3).fill_(inf);
  logits.select(1, 7).fill_(inf);
  const auto got = ops::sample_tokens(logits.to(device), 1.0, 0, generator).cpu();
  const auto counts = torch::bincount(got, {}, 10);
  EXPECT_EQ(counts[3].item<int64_t>() + counts[7].item<int64_t>(), 2000) << counts;
  EXPECT_GT(counts[3].item<int64_t>(), 800) << counts;  // an even share: 1000 +- 22
  EXPECT_GT(counts[7].item<int64_t>(), 800) << counts;
}

/// The frequencies of many draws (a row each) against softmax(logits / temperature) over the
/// scores at least the k-th largest (ties with it kept), from the formula.
inline void expect_draws_follow_the_tempered_top_k_softmax(torch::Device device, at::Generator generator) {
  const auto logits = torch::tensor({1.0, 0.5, -0.5, 2.0, 0.5}, torch::kDouble);
  const int64_t draws = 40000;
  for (const auto& [temperature, top_k] :
       std::vector<std::pair<double, int64_t>>{{1.0, 0}, {0.5, 0}, {1.5, 3}, {1.0, 2}, {0.7, 1}}) {
    auto want = (logits / temperature).exp();
    if (top_k > 0) want.masked_fill_(logits < std::get<0>(logits.topk(top_k)).min(), 0.0);
    want = want / want.sum();
    const auto rows = logits.to(torch::kBFloat16).unsqueeze(0).expand({draws, 5}).contiguous().to(device);
    const auto tokens = ops::sample_tokens(rows, temperature, top_k, generator);
    ASSERT_EQ(tokens.sizes(), torch::IntArrayRef({draws}));
    ASSERT_EQ(tokens.scalar_type(), torch::kLong);
    const auto got = torch::bincount(tokens.cpu(), {}, 5).to(torch::kDouble) / draws;
    // Five standard deviations of a frequency, plus bfloat16's rounding of the logits.
    const auto bound = 5 * (want * (1 - want) / draws).sqrt() + 0.01 * want;
    EXPECT_TRUE((got - want).abs().le(bound).all().item<bool>())
        << device << " temperature " << temperature << " top_k " << top_k << ": " << got << " against " << want;
  }
}

}  // namespace bittorch::testing
