#include <bittorch/train/metrics.h>

#include <bittorch/io/files.h>

#include <c10/util/Exception.h>

namespace bittorch::train {

MetricsLog::MetricsLog(std::string path, nlohmann::json header) : path_(std::move(path)), document_(std::move(header)) {
  TORCH_CHECK(document_.is_object() && !document_.contains("runs"),
              "bittorch::train::MetricsLog: the header must be a JSON object without a 'runs' field");
  document_["runs"] = nlohmann::json::array();
}

void MetricsLog::set_run(size_t index, nlohmann::json run) {
  auto& runs = document_["runs"];
  TORCH_CHECK(index <= runs.size(), "bittorch::train::MetricsLog: run ", index, " of ", runs.size());
  if (index == runs.size()) {
    runs.push_back(std::move(run));
  } else {
    runs[index] = std::move(run);
  }
  if (!path_.empty()) io::write_file_atomically(path_, document_.dump(2) + "\n");
}

}  // namespace bittorch::train
