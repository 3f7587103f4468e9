#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bittorch::apps {

/// Progress of one epoch, on stderr: a bar redrawn in place with the running loss and
/// samples/s when stderr is a terminal, else a log line at every quarter of the epoch
/// (readable CI logs).
class EpochProgress {
 public:
  EpochProgress(std::string label, int64_t total_samples, bool interactive);
  /// `samples_done` so far in this epoch; `mean_loss` over them.
  void update(int64_t samples_done, double mean_loss);
  /// Ends the bar's line.
  void finish();

 private:
  double elapsed_seconds() const;

  std::string label_;
  int64_t total_samples_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  int next_quarter_ = 1;
};

}  // namespace bittorch::apps
