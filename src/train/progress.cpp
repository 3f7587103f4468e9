#include <bittorch/train/progress.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace bittorch::train {

EpochProgress::EpochProgress(std::string label, int64_t total_steps, std::string unit, ProgressStyle style)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_steps_(total_steps),
      style_(style == ProgressStyle::Auto ? (stderr_is_terminal() ? ProgressStyle::Bar : ProgressStyle::Lines) : style),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void EpochProgress::update(int64_t steps_done, int64_t items_done, double mean_loss) {
  const auto now = std::chrono::steady_clock::now();
  const double fraction = total_steps_ > 0 ? static_cast<double>(steps_done) / total_steps_ : 1.0;
  const double rate = items_done / std::max(std::chrono::duration<double>(now - start_).count(), 1e-9);
  if (style_ == ProgressStyle::None) return;
  if (style_ == ProgressStyle::Bar) {
    if (steps_done < total_steps_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fputs(fmt::format("\r{} [{}{}] {:3.0f}%  loss {:.4f}  {:.0f} {}/s", label_, std::string(filled, '#'),
                           std::string(kWidth - filled, '.'), 100 * fraction, mean_loss, rate, unit_)
                   .c_str(),
               stderr);
    std::fflush(stderr);
    return;
  }
  // One line when one or more quarters were passed since the last (short epochs pass several).
  if (next_quarter_ > 4 || fraction < next_quarter_ / 4.0) return;
  while (next_quarter_ <= 4 && fraction >= next_quarter_ / 4.0) ++next_quarter_;
  spdlog::info("{} {:3.0f}%  loss {:.4f}  {:.0f} {}/s", label_, 100 * fraction, mean_loss, rate, unit_);
}

void EpochProgress::finish() {
  if (style_ == ProgressStyle::Bar) {
    std::fputs("\n", stderr);
    std::fflush(stderr);
  }
}

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

}  // namespace bittorch::train
