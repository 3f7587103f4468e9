#include "common/evaluation.h"

#include "common/cli.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdlib>

namespace bittorch::apps {
namespace {

constexpr double kMean = 0.1307, kStd = 0.3081;
}  // namespace

std::string default_data_dir(const std::string& dataset) {
  if (dataset == "mnist") return embedded_data_dir("mnist-10k");
  if (dataset == "fashion-mnist") {
    // scripts/setup.sh's uncompressed copy (read by torch::data::datasets::MNIST), else the
    // package's gzipped files (read by IdxDataset).
    const char* cache = std::getenv("BITTORCH_CACHE");
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    const std::string cached = cache != nullptr  ? std::string(cache) + "/fashion-mnist"
                               : xdg != nullptr  ? std::string(xdg) + "/bittorch/fashion-mnist"
                               : home != nullptr ? std::string(home) + "/.cache/bittorch/fashion-mnist"
                                                 : "";
    if (!cached.empty() && IdxDataset::full_uncompressed_split(cached, IdxDataset::Split::Train)) return cached;
    return "/usr/share/datasets/fashion-mnist";
  }
  throw UsageError("--dataset must be mnist or fashion-mnist, not '" + dataset + "'");
}

Split load_split(const std::string& dataset_name, const std::string& data_dir, IdxDataset::Split split, int64_t limit,
                 torch::Device device) {
  const std::string how_to_get =
      dataset_name == "mnist"
          ? "the embedded 10k set is data/mnist-10k in the BitTorch repository (installed under "
            "share/bittorch/mnist-10k); for the full set run scripts/download_mnist.sh DIR and pass --data-dir DIR"
          : "install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (it goes to "
            "/usr/share/datasets/fashion-mnist/) or pass --data-dir DIR";
  torch::Tensor images, targets;
  const char* reader = "torch::data::datasets::MNIST";
  if (IdxDataset::full_uncompressed_split(data_dir, split)) {
    const torch::data::datasets::MNIST dataset(data_dir, split == IdxDataset::Split::Train
                                                             ? torch::data::datasets::MNIST::Mode::kTrain
                                                             : torch::data::datasets::MNIST::Mode::kTest);
    TORCH_CHECK(dataset.targets().max().item<int64_t>() <= 9, data_dir, " holds labels above 9: corrupted; ",
                how_to_get);
    const int64_t keep = limit > 0 ? std::min<int64_t>(limit, dataset.images().size(0)) : dataset.images().size(0);
    images = dataset.images().narrow(0, 0, keep);
    targets = dataset.targets().narrow(0, 0, keep);
  } else {
    reader = "IdxDataset";
    const IdxDataset dataset(data_dir, split, limit, how_to_get);
    images = dataset.images();
    targets = dataset.targets();
  }
  const int64_t n = images.size(0);
  spdlog::info("{} {} set: {} samples from {} ({})", dataset_name,
               split == IdxDataset::Split::Train ? "training" : "test", n, data_dir, reader);
  auto inputs = images.reshape({n, -1}).sub(kMean).div(kStd);
  return {inputs.to(device), targets.to(device)};
}

SplitBatches::SplitBatches(Split split, int64_t rank, int64_t ranks)
    : split_(std::move(split)), rank_(rank), ranks_(ranks) {}

torch::data::Example<> SplitBatches::get_batch(c10::ArrayRef<size_t> indices) {
  const auto batch = torch::tensor(std::vector<int64_t>(indices.begin(), indices.end()), torch::kLong);
  const auto index = distributed::shard_of_batch(batch, rank_, ranks_).to(split_.inputs.device());
  return {split_.inputs.index_select(0, index), split_.targets.index_select(0, index)};
}

std::optional<size_t> SplitBatches::size() const {
  return static_cast<size_t>(split_.size());
}

Evaluation evaluate(torch::nn::Sequential& model, const Split& test, distributed::DataParallel* parallel) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t rank = parallel != nullptr ? parallel->rank() : 0,
                ranks = parallel != nullptr ? parallel->world_size() : 1;
  auto loss_sum = torch::zeros({}, test.inputs.options());
  auto correct = torch::zeros({}, test.targets.options());
  int64_t chunk = 0;
  for (int64_t start = 0; start < test.size(); start += 1000, ++chunk) {
    if (chunk % ranks != rank) continue;
    const auto x = test.inputs.slice(0, start, start + 1000);
    const auto y = test.targets.slice(0, start, start + 1000);
    const auto logits = model->forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    correct += logits.argmax(1).eq(y).sum();
  }
  double loss = loss_sum.item<double>(), right = correct.item<double>();
  if (parallel != nullptr) {
    loss = parallel->sum_over_ranks(loss);
    right = parallel->sum_over_ranks(right);
  }
  return {loss / test.size(), 100.0 * right / test.size()};
}

}  // namespace bittorch::apps
