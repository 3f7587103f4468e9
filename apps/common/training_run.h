#pragma once

// One model of a trainer app's run. bittorch-mnist and bittorch-lm train the full-precision
// model, the ternary one, or both in turn on the same batches (--compare); each model the same
// way: data parallel under torchrun, settings a resumed run must share, resume, its entry in
// the metrics file rewritten after every epoch, rank 0 alone reporting.

#include "common/launch.h"

#include <bittorch/distributed/data_parallel.h>
#include <bittorch/train.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace bittorch::apps {

class TrainingRun {
 public:
  /// Trains `model` (which the app made after seeding, so that every model starts from the
  /// same weights) with `optimizer` as `options` say, across `ranks` when launched so; `entry`
  /// starts the model's record in `metrics`.
  TrainingRun(torch::nn::Module& model, torch::optim::Optimizer& optimizer, train::TrainerOptions options,
              const ProcessRanks& ranks, train::MetricsLog& metrics, nlohmann::json entry,
              const distributed::DataParallelOptions& parallel_options = {});

  /// Sets the settings a resumed run must share and, with a `resume_path`, continues that
  /// checkpoint's run (logged).
  void begin(nlohmann::json settings, const std::string& resume_path);

  /// Trains to the end of the run (or its stop), rewriting the entry in the metrics after
  /// every epoch (after hooks.epoch_end, which may add to it). On rank 0, logs how to
  /// continue a run that stopped early. Returns whether this process reports (rank 0).
  bool fit(train::TrainerHooks hooks);

  /// Writes the entry into the metrics now.
  void report();

  train::Trainer& trainer() { return *trainer_; }
  distributed::DataParallel* parallel() { return parallel_.get(); }
  /// The model's record in the metrics.
  nlohmann::json& entry() { return entry_; }

 private:
  const ProcessRanks& ranks_;
  train::MetricsLog& metrics_;
  nlohmann::json entry_;
  size_t metrics_index_;
  std::unique_ptr<distributed::DataParallel> parallel_;
  std::unique_ptr<train::Trainer> trainer_;
};

}  // namespace bittorch::apps
