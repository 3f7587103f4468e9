#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace bittorch::apps {

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
};

/// One trained model: its per-epoch metrics plus free-form settings and results.
struct RunMetrics {
  std::string model;  // "fp32" or "ternary"
  std::vector<EpochMetrics> epochs;
  double final_test_accuracy = 0;
  nlohmann::json extra = nlohmann::json::object();

  double mean_epoch_seconds() const;
  /// The epochs as a JSON array ([{"epoch", "train_loss", "test_loss", "test_accuracy",
  /// "seconds"}]), and back (checkpoints carry them across a resume).
  nlohmann::json epochs_json() const;
  void set_epochs(const nlohmann::json& epochs);
};

/// {"dataset", "device", "runs": [{"model", "final_test_accuracy", "epochs": [...], ...}]},
/// written atomically (bittorch::io::write_file_atomically).
void write_metrics_json(const std::string& path, const std::string& dataset, const std::string& device,
                        const std::vector<RunMetrics>& runs);

}  // namespace bittorch::apps
