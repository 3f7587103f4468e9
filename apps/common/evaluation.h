#pragma once

// The MNIST-family test data and evaluation both bittorch-mnist and bittorch-infer use.

#include "common/idx_dataset.h"

#include <bittorch/distributed/data_parallel.h>

#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <string>

namespace bittorch::apps {

/// Inputs flattened and normalised once, on the device they are used on.
struct Split {
  torch::Tensor inputs, targets;
  int64_t size() const { return inputs.size(0); }
};

/// The default data directory of "mnist" (the embedded 10k set) or "fashion-mnist" (the
/// Debian package's); a UsageError for another name.
std::string default_data_dir(const std::string& dataset);

/// One split of `dataset` from `data_dir`, the first `limit` samples (0: all), normalised.
Split load_split(const std::string& dataset, const std::string& data_dir, IdxDataset::Split split, int64_t limit,
                 torch::Device device);

struct Evaluation {
  double loss = 0, accuracy = 0;  // mean cross-entropy, percent correct
};

/// The model on the whole test split; under data parallelism (`parallel`) the ranks take
/// turns with its chunks and the sums are all-reduced.
Evaluation evaluate(torch::nn::Sequential& model, const Split& test, distributed::DataParallel* parallel = nullptr);

}  // namespace bittorch::apps
