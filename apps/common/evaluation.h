#pragma once

// The MNIST-family data and evaluation that bittorch-mnist and bittorch-infer use. A split is
// read by LibTorch's torch::data::datasets::MNIST where that class can read it (a full set of
// 60,000 training or 10,000 test images in uncompressed IDX files), else by IdxDataset (the
// embedded 10k subset, gzipped files, sets of other sizes); training batches come from
// LibTorch's data loader and RandomSampler over it (SplitBatches).

#include "common/idx_dataset.h"

#include <bittorch/distributed/data_parallel.h>

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <string>

namespace bittorch::apps {

/// Inputs flattened and normalised once, on the device they are used on.
struct Split {
  torch::Tensor inputs, targets;
  int64_t size() const { return inputs.size(0); }
};

/// The default data directory of "mnist" (the embedded 10k set) or "fashion-mnist" (the copy
/// scripts/setup.sh decompresses into BitTorch's cache, else Debian's gzipped package); a
/// UsageError for another name.
std::string default_data_dir(const std::string& dataset);

/// One split of `dataset` from `data_dir`, the first `limit` samples (0: all), normalised; the
/// log line says which reader read it.
Split load_split(const std::string& dataset, const std::string& data_dir, IdxDataset::Split split, int64_t limit,
                 torch::Device device);

/// A split as LibTorch's data loader takes it (a BatchDataset): the samples of the indices a
/// sampler gives, this process's shard of them under data parallelism (bittorch::distributed::
/// shard_of_batch; all of them alone), selected on the split's device.
class SplitBatches : public torch::data::datasets::BatchDataset<SplitBatches, torch::data::Example<>> {
 public:
  SplitBatches(Split split, int64_t rank, int64_t ranks);
  torch::data::Example<> get_batch(c10::ArrayRef<size_t> indices) override;
  std::optional<size_t> size() const override;

 private:
  Split split_;
  int64_t rank_, ranks_;
};

struct Evaluation {
  double loss = 0, accuracy = 0;  // mean cross-entropy, percent correct
};

/// The model on the whole test split; under data parallelism (`parallel`) the ranks take
/// turns with its chunks and the sums are all-reduced.
Evaluation evaluate(torch::nn::Sequential& model, const Split& test, distributed::DataParallel* parallel = nullptr);

}  // namespace bittorch::apps
