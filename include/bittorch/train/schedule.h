#pragma once

// Learning-rate schedules: a linear warmup, then a constant, linear or cosine decay, on
// LibTorch's torch::optim::LRScheduler.

#include <bittorch/train/export.h>

#include <torch/arg.h>
#include <torch/optim/schedulers/lr_scheduler.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::train {

enum class LrDecay { Constant, Linear, Cosine };

/// "constant", "linear", "cosine"; and back (a c10::Error lists the names for another).
BITTORCH_TRAIN_API std::string to_string(LrDecay decay);
BITTORCH_TRAIN_API LrDecay lr_decay_from_string(std::string_view name);

/// The shape of the schedule; the peak learning rate is the optimizer's own.
struct BITTORCH_TRAIN_API LrScheduleOptions {
  /// Steps over which the rate rises linearly to its peak: step s < warmup_steps runs at
  /// (s + 1) / warmup_steps of it.
  TORCH_ARG(int64_t, warmup_steps) = 0;
  /// The step at which the decay ends (the run's length); the decay spans warmup_steps to it.
  TORCH_ARG(int64_t, total_steps) = 0;
  TORCH_ARG(LrDecay, decay) = LrDecay::Constant;
  /// The fraction of the peak the decay ends at.
  TORCH_ARG(double, final_factor) = 0.0;
};

/// A c10::Error naming the field when `options` are unusable (negative steps, a decay
/// without total_steps, warmup past the end, final_factor outside [0, 1]).
BITTORCH_TRAIN_API void check_lr_schedule(const LrScheduleOptions& options);

/// The fraction of the peak learning rate at step `step` (0-based): (s + 1) / W during the
/// warmup of W steps, then with p = (s - W) / (T - W) clamped to [0, 1] and f the final
/// factor: 1 (constant), f + (1 - f)(1 - p) (linear), f + (1 - f)(1 + cos(pi p)) / 2 (cosine).
BITTORCH_TRAIN_API double lr_factor(const LrScheduleOptions& options, int64_t step);

/// Sets each parameter group's learning rate to its peak (the rate the group had when the
/// scheduler was made) times lr_factor. Call step() before each optimizer step: the k-th call
/// sets the rate of step k - 1. A resumed run calls set_position(steps done).
class BITTORCH_TRAIN_API WarmupDecayLR : public torch::optim::LRScheduler {
 public:
  WarmupDecayLR(torch::optim::Optimizer& optimizer, LrScheduleOptions options);

  /// Where the next step() continues: `steps_done` optimizer steps were taken.
  void set_position(int64_t steps_done);
  const LrScheduleOptions& options() const { return options_; }

 private:
  std::vector<double> get_lrs() override;

  LrScheduleOptions options_;
  std::vector<double> peak_lrs_;
};

}  // namespace bittorch::train
