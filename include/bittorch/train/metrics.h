#pragma once

// A metrics file written as the run goes: a JSON document rewritten whole (atomically) every
// time a run reports, so that a run that dies keeps its results so far.

#include <bittorch/train/export.h>

#include <nlohmann/json.hpp>

#include <string>

namespace bittorch::train {

/// {<header fields>, "runs": [<run>, ...]}: one entry per trained model (an app that compares
/// two models writes both into one file).
class BITTORCH_TRAIN_API MetricsLog {
 public:
  /// `path` empty: nothing is written (the calls still keep the document).
  MetricsLog(std::string path, nlohmann::json header);

  /// Sets the run at `index` (index == the number of runs: a new one) and rewrites the file.
  void set_run(size_t index, nlohmann::json run);
  size_t run_count() const { return document_["runs"].size(); }
  const nlohmann::json& document() const { return document_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  nlohmann::json document_;
};

}  // namespace bittorch::train
