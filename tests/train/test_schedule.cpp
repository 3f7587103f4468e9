// bittorch::train learning-rate schedules against the formulas, and on an optimizer.

#include <bittorch/train/schedule.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "reference.h"

namespace {

using bittorch::testing::throws_error_mentioning;
using bittorch::train::LrDecay;
using bittorch::train::LrScheduleOptions;

// The schedule written out step by step: warmup W, decay to T, final factor f.
double expected_factor(LrDecay decay, int64_t warmup, int64_t total, double final_factor, int64_t step) {
  if (step < warmup) return (step + 1.0) / warmup;
  if (decay == LrDecay::Constant) return 1.0;
  double progress = total > warmup ? (step - warmup) / double(total - warmup) : 1.0;
  progress = std::min(1.0, std::max(0.0, progress));
  const double shape = decay == LrDecay::Linear ? 1.0 - progress : (1.0 + std::cos(M_PI * progress)) / 2.0;
  return final_factor + (1.0 - final_factor) * shape;
}

TEST(LrSchedule, FactorsFollowTheFormulas) {
  for (const auto decay : {LrDecay::Constant, LrDecay::Linear, LrDecay::Cosine}) {
    for (const int64_t warmup : {0, 1, 10}) {
      for (const double final_factor : {0.0, 0.1}) {
        const auto options =
            LrScheduleOptions().decay(decay).warmup_steps(warmup).total_steps(100).final_factor(final_factor);
        for (int64_t step = 0; step <= 120; ++step) {
          EXPECT_NEAR(bittorch::train::lr_factor(options, step),
                      expected_factor(decay, warmup, 100, final_factor, step), 1e-12)
              << to_string(decay) << " warmup " << warmup << " step " << step;
        }
      }
    }
  }
  // Landmarks: the warmup reaches the peak at its last step, cosine is half-way at mid-decay.
  const auto cosine = LrScheduleOptions().decay(LrDecay::Cosine).warmup_steps(4).total_steps(104);
  EXPECT_DOUBLE_EQ(bittorch::train::lr_factor(cosine, 0), 0.25);
  EXPECT_DOUBLE_EQ(bittorch::train::lr_factor(cosine, 3), 1.0);
  EXPECT_NEAR(bittorch::train::lr_factor(cosine, 54), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(bittorch::train::lr_factor(cosine, 104), 0.0);
}

TEST(LrSchedule, SetsEachGroupsRateBeforeEachStepAndResumes) {
  auto a = torch::zeros({2}, torch::requires_grad());
  auto b = torch::zeros({3}, torch::requires_grad());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a}, std::make_unique<torch::optim::SGDOptions>(0.1));
  groups.emplace_back(std::vector<torch::Tensor>{b}, std::make_unique<torch::optim::SGDOptions>(0.01));
  torch::optim::SGD optimizer(groups, torch::optim::SGDOptions(1.0));
  const auto options = LrScheduleOptions().decay(LrDecay::Linear).warmup_steps(2).total_steps(10);
  bittorch::train::WarmupDecayLR scheduler(optimizer, options);
  for (int64_t step = 0; step < 12; ++step) {
    scheduler.step();
    const double factor = expected_factor(LrDecay::Linear, 2, 10, 0.0, step);
    EXPECT_NEAR(optimizer.param_groups()[0].options().get_lr(), 0.1 * factor, 1e-15) << step;
    EXPECT_NEAR(optimizer.param_groups()[1].options().get_lr(), 0.01 * factor, 1e-15) << step;
  }
  // A resumed run: a new scheduler on an optimizer at its peak rates, moved to step 5.
  torch::optim::SGD fresh(groups, torch::optim::SGDOptions(1.0));
  bittorch::train::WarmupDecayLR resumed(fresh, options);
  resumed.set_position(5);
  resumed.step();
  EXPECT_NEAR(fresh.param_groups()[0].options().get_lr(), 0.1 * expected_factor(LrDecay::Linear, 2, 10, 0.0, 5), 1e-15);
}

TEST(LrSchedule, BadOptionsNameTheField) {
  const auto check = [](const LrScheduleOptions& options) { bittorch::train::check_lr_schedule(options); };
  EXPECT_TRUE(throws_error_mentioning([&] { check(LrScheduleOptions().warmup_steps(-1)); }, {"warmup_steps"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { check(LrScheduleOptions().decay(LrDecay::Cosine)); }, {"cosine", "total_steps"}));
  EXPECT_TRUE(throws_error_mentioning([&] { check(LrScheduleOptions().warmup_steps(20).total_steps(10)); },
                                      {"warmup_steps (20)", "total_steps (10)"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { check(LrScheduleOptions().decay(LrDecay::Linear).total_steps(5).final_factor(1.5)); }, {"final_factor"}));
  EXPECT_TRUE(throws_error_mentioning([] { bittorch::train::lr_decay_from_string("step"); }, {"'step'", "cosine"}));
  for (const auto decay : {LrDecay::Constant, LrDecay::Linear, LrDecay::Cosine}) {
    EXPECT_EQ(bittorch::train::lr_decay_from_string(to_string(decay)), decay);
  }
}

}  // namespace
