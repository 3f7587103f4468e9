#include <bittorch/train/schedule.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace bittorch::train {

std::string to_string(LrDecay decay) {
  switch (decay) {
    case LrDecay::Constant:
      return "constant";
    case LrDecay::Linear:
      return "linear";
    case LrDecay::Cosine:
      return "cosine";
  }
  TORCH_CHECK(false, "bittorch::train: unknown LrDecay ", static_cast<int>(decay));
}

LrDecay lr_decay_from_string(std::string_view name) {
  for (const auto decay : {LrDecay::Constant, LrDecay::Linear, LrDecay::Cosine}) {
    if (name == to_string(decay)) return decay;
  }
  TORCH_CHECK(false, "bittorch::train: unknown learning-rate decay '", name, "' (constant, linear or cosine)");
}

void check_lr_schedule(const LrScheduleOptions& o) {
  const char* what = "bittorch::train::LrScheduleOptions";
  TORCH_CHECK(o.warmup_steps() >= 0, what, ": warmup_steps must be >= 0, not ", o.warmup_steps());
  TORCH_CHECK(o.total_steps() >= 0, what, ": total_steps must be >= 0, not ", o.total_steps());
  TORCH_CHECK(o.decay() == LrDecay::Constant || o.total_steps() > 0, what, ": a ", to_string(o.decay()),
              " decay needs total_steps (the run's length)");
  TORCH_CHECK(o.total_steps() == 0 || o.warmup_steps() <= o.total_steps(), what, ": warmup_steps (", o.warmup_steps(),
              ") must not exceed total_steps (", o.total_steps(), ")");
  TORCH_CHECK(o.final_factor() >= 0 && o.final_factor() <= 1, what, ": final_factor must be in [0, 1], not ",
              o.final_factor());
}

double lr_factor(const LrScheduleOptions& o, int64_t step) {
  if (step < o.warmup_steps()) return static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps());
  if (o.decay() == LrDecay::Constant) return 1.0;
  const int64_t span = o.total_steps() - o.warmup_steps();
  const double progress =
      span > 0 ? std::clamp(static_cast<double>(step - o.warmup_steps()) / static_cast<double>(span), 0.0, 1.0) : 1.0;
  const double shape = o.decay() == LrDecay::Linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.final_factor() + (1.0 - o.final_factor()) * shape;
}

WarmupDecayLR::WarmupDecayLR(torch::optim::Optimizer& optimizer, LrScheduleOptions options)
    : torch::optim::LRScheduler(optimizer), options_(options), peak_lrs_(get_current_lrs()) {
  check_lr_schedule(options_);
}

void WarmupDecayLR::set_position(int64_t steps_done) {
  TORCH_CHECK(steps_done >= 0, "bittorch::train::WarmupDecayLR: steps_done must be >= 0, not ", steps_done);
  step_count_ = static_cast<unsigned>(steps_done);
}

std::vector<double> WarmupDecayLR::get_lrs() {
  const double factor = lr_factor(options_, static_cast<int64_t>(step_count_));
  std::vector<double> lrs = peak_lrs_;
  for (auto& lr : lrs) lr *= factor;
  return lrs;
}

}  // namespace bittorch::train
