#pragma once

// Progress of one epoch on stderr.

#include <bittorch/train/export.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace bittorch::train {

/// How an epoch shows its progress: Auto is Bar where stderr is a terminal, else Lines.
enum class ProgressStyle {
  Auto,
  Bar,    ///< a bar redrawn in place, at most 10 times a second
  Lines,  ///< an info log line when a quarter of the epoch is passed (readable CI logs)
  None,   ///< nothing within an epoch
};

/// The running loss and throughput (`unit`s per second: samples, tokens) of one epoch, on
/// stderr.
class BITTORCH_TRAIN_API EpochProgress {
 public:
  EpochProgress(std::string label, int64_t total_steps, std::string unit, ProgressStyle style);
  /// `steps_done` and `items_done` so far in this epoch; `mean_loss` over them.
  void update(int64_t steps_done, int64_t items_done, double mean_loss);
  /// Ends the bar's line.
  void finish();

 private:
  std::string label_, unit_;
  int64_t total_steps_;
  ProgressStyle style_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int next_quarter_ = 1;
};

/// Whether stderr, where progress goes, is a terminal (a bar) rather than a file or pipe.
BITTORCH_TRAIN_API bool stderr_is_terminal();

}  // namespace bittorch::train
