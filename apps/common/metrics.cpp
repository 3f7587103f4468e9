#include "common/metrics.h"

#include <bittorch/io/files.h>

#include <numeric>

namespace bittorch::apps {

double RunMetrics::mean_epoch_seconds() const {
  if (epochs.empty()) return 0.0;
  return std::accumulate(epochs.begin(), epochs.end(), 0.0,
                         [](double sum, const EpochMetrics& e) { return sum + e.seconds; }) /
         static_cast<double>(epochs.size());
}

nlohmann::json RunMetrics::epochs_json() const {
  nlohmann::json array = nlohmann::json::array();
  for (const auto& e : epochs) {
    array.push_back({{"epoch", e.epoch},
                     {"train_loss", e.train_loss},
                     {"test_loss", e.test_loss},
                     {"test_accuracy", e.test_accuracy},
                     {"seconds", e.seconds}});
  }
  return array;
}

void RunMetrics::set_epochs(const nlohmann::json& array) {
  epochs.clear();
  for (const auto& e : array) {
    epochs.push_back({e.at("epoch").get<int>(), e.at("train_loss").get<double>(), e.at("test_loss").get<double>(),
                      e.at("test_accuracy").get<double>(), e.at("seconds").get<double>()});
  }
}

void write_metrics_json(const std::string& path, const std::string& dataset, const std::string& device,
                        const std::vector<RunMetrics>& runs) {
  nlohmann::json json_runs = nlohmann::json::array();
  for (const auto& run : runs) {
    nlohmann::json entry = run.extra;
    entry["model"] = run.model;
    entry["final_test_accuracy"] = run.final_test_accuracy;
    entry["mean_epoch_seconds"] = run.mean_epoch_seconds();
    entry["epochs"] = run.epochs_json();
    json_runs.push_back(std::move(entry));
  }
  const nlohmann::json document = {{"dataset", dataset}, {"device", device}, {"runs", json_runs}};
  io::write_file_atomically(path, document.dump(2) + "\n");
}

}  // namespace bittorch::apps
