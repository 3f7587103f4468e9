// bittorch::sample_tokens on CUDA: its draws equal Philox4x32-10 and the formulas computed on
// the host (every dtype, vocabularies from 1 to 50,257, top_k from 1 to all, two calls of one
// generator), greedy picks and NaN rows as on the CPU, the frequencies of many draws, and the
// op captured in a CUDA graph drawing on each replay what eager calls draw.

#include "ops/sample_tokens_check.h"
#include "reference.h"

#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <bittorch/bittorch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace {

namespace bt = bittorch::testing;

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

at::Generator cuda_generator(uint64_t seed) {
  auto generator = at::cuda::detail::createCUDAGenerator();
  generator.set_current_seed(seed);  // offset 0
  return generator;
}

// The token of each row of `logits` (float64 holding the dtype's values) at Philox's (seed,
// offset), from the formulas: scores s_i = (float(x_i) - m) / float(temperature) in float32
// (m the row's largest, s_i = 0 where x_i = m), those
// at least the top_k-th largest kept, then the first argmax of s_i - log(-log U_i), U_i =
// (x + 1/2) / 2^32 for x the first word of Philox4x32-10 at counter (offset, i, row) and key
// seed. A row whose two best keys are closer than double rounding can separate gets -1: either
// pick is right.
std::vector<int64_t> reference_tokens(const torch::Tensor& logits, double temperature, int64_t top_k, uint64_t seed,
                                      uint64_t offset) {
  std::vector<int64_t> tokens;
  const auto vocab = logits.size(1);
  for (int64_t row = 0; row < logits.size(0); ++row) {
    const auto* x = logits[row].data_ptr<double>();
    float largest = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab; ++i) largest = std::max(largest, static_cast<float>(x[i]));
    std::vector<float> scores;
    for (int64_t i = 0; i < vocab; ++i) {
      const float value = static_cast<float>(x[i]);
      scores.push_back(value == largest ? 0.0F : (value - largest) / static_cast<float>(temperature));
    }
    float threshold = -std::numeric_limits<float>::infinity();
    if (top_k > 0 && top_k < vocab) {
      auto sorted = scores;
      std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<>());
      threshold = sorted[static_cast<size_t>(top_k - 1)];
    }
    std::vector<double> keys;
    for (int64_t i = 0; i < vocab; ++i) {
      const auto words = bt::philox4x32_10({static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                                            static_cast<uint32_t>(i), static_cast<uint32_t>(row)},
                                           {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
      const double uniform = (static_cast<double>(words[0]) + 0.5) * 0x1p-32;
      keys.push_back(scores[static_cast<size_t>(i)] >= threshold
                         ? static_cast<double>(scores[static_cast<size_t>(i)]) - std::log(-std::log(uniform))
                         : -std::numeric_limits<double>::infinity());
    }
    const auto best = bt::first_largest(keys);
    bool near_tie = false;
    for (int64_t i = 0; i < vocab; ++i) {
      const double gap = keys[static_cast<size_t>(best)] - keys[static_cast<size_t>(i)];
      near_tie |= i != best && std::isfinite(gap) && gap <= 1e-12 * std::max(1.0, std::abs(keys[best]));
    }
    tokens.push_back(near_tie ? -1 : best);
  }
  return tokens;
}

TEST(SampleTokensCuda, DrawsArePhiloxAndTheFormulas) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(123);
  int64_t compared = 0;
  for (const auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf, torch::kBFloat16}) {
    for (const int64_t vocab : {1, 5, 256, 1000, 50257}) {
      // Logits in the dtype's precision (bfloat16's many ties included), held as float64.
      const auto logits = (3 * torch::randn({3, vocab}, torch::kDouble)).to(dtype).to(torch::kDouble);
      for (const int64_t top_k : {int64_t{0}, int64_t{1}, int64_t{40}, vocab - 1, vocab}) {
        for (const double temperature : {0.7, 1.3}) {
          const uint64_t seed = 1000 + static_cast<uint64_t>(vocab + top_k);
          auto generator = cuda_generator(seed);
          for (const uint64_t offset : {0, 4}) {  // each call moves the offset by 4
            const auto got = bittorch::ops::sample_tokens(logits.to(dtype).cuda(), temperature, top_k, generator).cpu();
            const auto want = reference_tokens(logits, temperature, top_k, seed, offset);
            for (int64_t row = 0; row < 3; ++row) {
              if (want[static_cast<size_t>(row)] < 0) continue;
              ++compared;
              EXPECT_EQ(got[row].item<int64_t>(), want[static_cast<size_t>(row)])
                  << dtype << " vocab " << vocab << " top_k " << top_k << " temperature " << temperature << " offset "
                  << offset << " row " << row;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 900);  // near ties are rare
}

TEST(SampleTokensCuda, GreedyPicksTheFirstLargest) {
  SKIP_WITHOUT_CUDA();
  bt::expect_greedy_picks_the_first_largest(torch::kCUDA);
}

TEST(SampleTokensCuda, NanRowsGiveTheirFirstNan) {
  SKIP_WITHOUT_CUDA();
  bt::expect_nan_rows_give_their_first_nan(torch::kCUDA);
}

TEST(SampleTokensCuda, TinyTemperaturesAndInfiniteLogitsDrawTheLargest) {
  SKIP_WITHOUT_CUDA();
  bt::expect_tiny_temperatures_and_infinite_logits_draw_the_largest(torch::kCUDA, cuda_generator(8));
}

TEST(SampleTokensCuda, DrawsFollowTheTemperedSoftmaxOfTheTopK) {
  SKIP_WITHOUT_CUDA();
  bt::expect_draws_follow_the_tempered_top_k_softmax(torch::kCUDA, cuda_generator(7));
}

// Captured with its generator registered, each replay draws what the next eager call of a
// generator seeded alike draws.
TEST(SampleTokensCuda, AGraphDrawsAsEagerCalls) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(124);
  const auto logits = torch::randn({4, 300}, torch::kCUDA).to(torch::kBFloat16);
  auto eager = cuda_generator(9);
  std::vector<torch::Tensor> want;
  for (int i = 0; i < 3; ++i) want.push_back(bittorch::ops::sample_tokens(logits, 0.8, 40, eager));
  auto captured = cuda_generator(9);
  torch::Tensor tokens;
  at::cuda::CUDAGraph graph;
  {
    c10::cuda::CUDAStreamGuard stream(c10::cuda::getStreamFromPool());
    graph.register_generator_state(captured);
    graph.capture_begin();
    tokens = bittorch::ops::sample_tokens(logits, 0.8, 40, captured);
    graph.capture_end();
  }
  for (int i = 0; i < 3; ++i) {
    graph.replay();
    EXPECT_TRUE(torch::equal(tokens, want[static_cast<size_t>(i)])) << "replay " << i;
  }
  EXPECT_FALSE(torch::equal(want[0], want[1]));
}

}  // namespace
