#include "common/metrics.h"

#include "common/cli.h"

#include <numeric>

namespace bittorch::apps {

double RunMetrics::mean_epoch_seconds() const {
  if (epochs.empty()) return 0.0;
  return std::accumulate(epochs.begin(), epochs.end(), 0.0,
                         [](double sum, const EpochMetrics& e) { return sum + e.seconds; }) /
         static_cast<double>(epochs.size());
}

void write_metrics_json(const std::string& path, const std::string& dataset,
                        const std::string& device, const std::vector<RunMetrics>& runs) {
  nlohmann::json json_runs = nlohmann::json::array();
  for (const auto& run : runs) {
    nlohmann::json epochs = nlohmann::json::array();
    for (const auto& e : run.epochs) {
      epochs.push_back({{"epoch", e.epoch},
                        {"train_loss", e.train_loss},
                        {"test_loss", e.test_loss},
                        {"test_accuracy", e.test_accuracy},
                        {"seconds", e.seconds}});
    }
    nlohmann::json entry = run.extra;
    entry["model"] = run.model;
    entry["final_test_accuracy"] = run.final_test_accuracy;
    entry["mean_epoch_seconds"] = run.mean_epoch_seconds();
    entry["epochs"] = std::move(epochs);
    json_runs.push_back(std::move(entry));
  }
  const nlohmann::json document = {{"dataset", dataset}, {"device", device}, {"runs", json_runs}};
  write_file_atomically(path, document.dump(2) + "\n");
}

}  // namespace bittorch::apps
