#include "common/evaluation.h"

#include "common/cli.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

namespace bittorch::apps {
namespace {

constexpr double kMean = 0.1307, kStd = 0.3081;

}  // namespace

std::string default_data_dir(const std::string& dataset) {
  if (dataset == "mnist") return embedded_data_dir("mnist-10k");
  if (dataset == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
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
  IdxDataset dataset(data_dir, split, limit, how_to_get);
  const auto n = static_cast<int64_t>(*dataset.size());
  spdlog::info("{} {} set: {} samples from {}", dataset_name, split == IdxDataset::Split::Train ? "training" : "test",
               n, data_dir);
  auto inputs = dataset.images().reshape({n, -1}).sub(kMean).div(kStd);
  return {inputs.to(device), dataset.targets().to(device)};
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
