#include "common/progress.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace bittorch::apps {

EpochProgress::EpochProgress(std::string label, int64_t total_samples, bool interactive)
    : label_(std::move(label)),
      total_samples_(total_samples),
      interactive_(interactive),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double EpochProgress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void EpochProgress::update(int64_t samples_done, double mean_loss) {
  const double fraction = total_samples_ > 0 ? static_cast<double>(samples_done) / total_samples_ : 1.0;
  const double rate = samples_done / std::max(elapsed_seconds(), 1e-9);
  if (interactive_) {
    const auto now = std::chrono::steady_clock::now();
    if (samples_done < total_samples_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fputs(fmt::format("\r{} [{}{}] {:3.0f}%  loss {:.4f}  {:.0f} samples/s", label_, std::string(filled, '#'),
                           std::string(kWidth - filled, '.'), 100 * fraction, mean_loss, rate)
                   .c_str(),
               stderr);
    std::fflush(stderr);
    return;
  }
  while (next_quarter_ <= 4 && fraction >= next_quarter_ / 4.0) {
    spdlog::info("{} {:3d}%  loss {:.4f}  {:.0f} samples/s", label_, next_quarter_ * 25, mean_loss, rate);
    ++next_quarter_;
  }
}

void EpochProgress::finish() {
  if (interactive_) {
    std::fputs("\n", stderr);
    std::fflush(stderr);
  }
}

}  // namespace bittorch::apps
