// bittorch-mnist: trains a 784-256-128-10 MLP on MNIST or Fashion-MNIST with TernaryLinear
// or torch::nn::Linear layers, or both side by side (--compare).

#include "common/cli.h"
#include "common/evaluation.h"
#include "common/idx_dataset.h"
#include "common/metrics.h"
#include "common/models.h"
#include "common/progress.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>

namespace {

using namespace bittorch::apps;

// The trainer's own ternary recipe, chosen by a sweep over scale modes, thresholds and
// learning rates (README, "Choosing the ternary recipe"): max scaling with a threshold of
// 0.2 instead of the library's 0.05, at the FP32 model's learning rate, with the cosine
// schedule both models share.
constexpr const char* kDefaultScaleMode = "max";
constexpr double kDefaultThresholdFactor = 0.2;

const std::vector<int64_t> kLayerSizes = {784, 256, 128, 10};

struct Config {
  std::string dataset, data_dir, metrics_json, save_path, load_path, export_path;
  int64_t epochs = 5, batch_size = 128, train_limit = 0, test_limit = 0;
  double lr = 1e-3, ternary_lr = 1e-3;
  uint64_t seed = 42;
  TernaryRecipe recipe;
  bool progress = true;
  bool cosine_decay = false;
};

// This epoch's batches: the indices of a RandomSampler reseeded from the run's seed and the
// epoch, so that every model sees the same batches in the same order.
torch::Tensor epoch_order(int64_t samples, uint64_t seed, int64_t epoch, torch::Device device) {
  torch::manual_seed(seed * 1000 + epoch);
  torch::data::samplers::RandomSampler sampler(samples);
  const auto indices = sampler.next(samples).value();
  return torch::tensor(std::vector<int64_t>(indices.begin(), indices.end())).to(device);
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

RunMetrics train(const std::string& kind, const Config& config, const Split& train_split,
                 const Split& test, torch::Device device) {
  const bool ternary = kind == "ternary";
  torch::manual_seed(config.seed);  // same initial weights for both models
  auto model = make_mlp(kLayerSizes, ternary ? std::optional(config.recipe) : std::nullopt);
  if (!config.load_path.empty()) {
    load_checkpoint(model, kind, config.load_path);
    spdlog::info("{}: loaded {}", kind, config.load_path);
  }
  model->to(device);
  const double lr = ternary ? config.ternary_lr : config.lr;
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(lr));

  RunMetrics run;
  run.model = kind;
  run.extra["lr"] = lr;
  run.extra["batch_size"] = config.batch_size;
  run.extra["seed"] = config.seed;
  run.extra["lr_schedule"] = config.cosine_decay ? "cosine" : "constant";
  if (ternary) {
    run.extra["scale_mode"] = bittorch::quant::to_string(config.recipe.scale_mode);
    run.extra["threshold_factor"] = config.recipe.threshold_factor;
    run.extra["activation_bits"] = config.recipe.activation_bits;
  }
  spdlog::info("{}: training {} epochs, lr {}, {} training and {} test samples on {}", kind,
               config.epochs, lr, train_split.size(), test.size(), device.str());
  for (int64_t epoch = 1; epoch <= config.epochs; ++epoch) {
    const auto order = epoch_order(train_split.size(), config.seed, epoch, device);
    model->train();
    EpochProgress progress(fmt::format("{} epoch {}/{}", kind, epoch, config.epochs),
                           train_split.size(), config.progress && stdout_is_terminal());
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    auto loss_sum = torch::zeros({}, train_split.inputs.options());
    int64_t batches = 0;
    for (int64_t begin = 0; begin < train_split.size(); begin += config.batch_size) {
      const auto index = order.slice(0, begin, begin + config.batch_size);
      if (config.cosine_decay) {
        const double progress_fraction =
            ((epoch - 1) * train_split.size() + begin) / static_cast<double>(config.epochs * train_split.size());
        for (auto& group : optimizer.param_groups()) {
          static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr * 0.5 * (1 + std::cos(M_PI * progress_fraction)));
        }
      }
      optimizer.zero_grad();
      const auto loss = torch::nn::functional::cross_entropy(
          model->forward(train_split.inputs.index_select(0, index)),
          train_split.targets.index_select(0, index));
      loss.backward();
      optimizer.step();
      loss_sum += loss.detach();
      ++batches;
      // Reading the loss synchronises with the GPU: only every 20 batches and at the end.
      const int64_t done = std::min(begin + config.batch_size, train_split.size());
      if (batches % 20 == 0 || done == train_split.size()) {
        progress.update(done, loss_sum.item<double>() / batches);
      }
    }
    synchronize(device);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.finish();
    const auto result = evaluate(model, test);
    run.epochs.push_back({static_cast<int>(epoch), loss_sum.item<double>() / std::max<int64_t>(batches, 1),
                          result.loss, result.accuracy, seconds});
    spdlog::info("{} epoch {}/{}: train loss {:.4f}, test loss {:.4f}, test accuracy {:.2f}% ({:.2f} s)",
                 kind, epoch, config.epochs, run.epochs.back().train_loss, result.loss,
                 result.accuracy, seconds);
  }
  run.final_test_accuracy = config.epochs > 0 ? run.epochs.back().test_accuracy : evaluate(model, test).accuracy;
  if (config.epochs == 0) {
    spdlog::info("{}: test accuracy {:.2f}% (evaluation only)", kind, run.final_test_accuracy);
  }
  run.extra["weights"] = nlohmann::json::array();
  for (const auto& layer : describe_weights(model)) {
    nlohmann::json entry = {{"layer", layer.name},
                            {"fp32_bytes", layer.fp32_bytes},
                            {"ternary_bytes", layer.ternary_bytes}};
    if (layer.zero_fraction) entry["zero_fraction"] = *layer.zero_fraction;
    run.extra["weights"].push_back(entry);
  }
  if (ternary && !config.export_path.empty()) {
    // Exported, read back and evaluated: the accuracy bittorch-infer will print for this file.
    bittorch::save_packed(model, config.export_path);
    auto packed = bittorch::load_packed(config.export_path);
    packed->to(device);
    const auto exported = evaluate(packed, test);
    const int64_t file_bytes = file_size_bytes(config.export_path);
    spdlog::info("ternary: exported {} ({} bytes); packed model test accuracy {:.2f}%", config.export_path,
                 file_bytes, exported.accuracy);
    run.extra["export"] = {{"path", config.export_path}, {"file_bytes", file_bytes},
                           {"packed_test_accuracy", exported.accuracy}};
  }
  if (!config.save_path.empty()) {
    model->to(torch::kCPU);
    save_checkpoint(model, kind, config.save_path);
    spdlog::info("{}: saved {}", kind, config.save_path);
  }
  return run;
}

std::string human_bytes(int64_t bytes) {
  if (bytes >= (1 << 20)) return fmt::format("{:.2f} MB", bytes / 1048576.0);
  return fmt::format("{:.1f} KB", bytes / 1024.0);
}

void print_summary(const std::vector<RunMetrics>& runs) {
  std::cout << "\n"
            << fmt::format("{:<8}  {:>9}  {:>10}  {:>28}  {}\n", "model", "test acc",
                           "mean epoch", "weight memory", "zero weights per layer");
  for (const auto& run : runs) {
    int64_t fp32 = 0, packed = 0;
    std::string zeros;
    for (const auto& layer : run.extra["weights"]) {
      fp32 += layer["fp32_bytes"].get<int64_t>();
      packed += layer["ternary_bytes"].get<int64_t>();
      if (layer.contains("zero_fraction")) {
        zeros += fmt::format("{}{:.1f}%", zeros.empty() ? "" : ", ",
                             100 * layer["zero_fraction"].get<double>());
      }
    }
    const std::string memory =
        run.model == "ternary"
            ? fmt::format("{} -> {} ({:.1f}x)", human_bytes(fp32), human_bytes(packed),
                          static_cast<double>(fp32) / packed)
            : fmt::format("{} (FP32)", human_bytes(fp32));
    std::cout << fmt::format("{:<8}  {:>8.2f}%  {:>8.2f} s  {:>28}  {}\n", run.model,
                             run.final_test_accuracy, run.mean_epoch_seconds(), memory,
                             zeros.empty() ? "-" : zeros);
  }
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-mnist",
                           "Train an MLP (784-256-128-10) with ternary or FP32 weights on MNIST");
  // clang-format off
  options.add_options()
    ("epochs", "Training epochs (0 with --load: evaluate only)", cxxopts::value<int64_t>()->default_value("5"))
    ("batch-size", "Mini-batch size", cxxopts::value<int64_t>()->default_value("128"))
    ("lr", "Adam learning rate of the FP32 model", cxxopts::value<double>()->default_value("0.001"))
    ("ternary-lr", "Adam learning rate of the ternary model (default: --lr)", cxxopts::value<double>())
    ("seed", "Random seed (initial weights and batch order)", cxxopts::value<uint64_t>()->default_value("42"))
    ("dataset", "mnist or fashion-mnist", cxxopts::value<std::string>()->default_value("mnist"))
    ("data-dir", "Directory with the four IDX files, gzipped or not (default: the embedded "
                 "data/mnist-10k for mnist, /usr/share/datasets/fashion-mnist for fashion-mnist)",
                 cxxopts::value<std::string>()->default_value(""))
    ("no-ternary", "Train the FP32 torch::nn::Linear model only")
    ("compare", "Train the FP32 and the ternary model on the same data and compare them")
    ("cuda", "Train on the GPU (same as --device cuda)")
    ("device", "cpu or cuda", cxxopts::value<std::string>()->default_value("cpu"))
    ("train-limit", "Use only the first N training images (0: all)", cxxopts::value<int64_t>()->default_value("0"))
    ("test-limit", "Use only the first N test images (0: all)", cxxopts::value<int64_t>()->default_value("0"))
    ("export", "Write the trained ternary model as a packed model file to PATH (see bittorch-infer)", cxxopts::value<std::string>()->default_value(""))
    ("save", "Write the trained model's checkpoint to PATH (atomically)", cxxopts::value<std::string>()->default_value(""))
    ("load", "Start from the checkpoint at PATH (evaluate it with --epochs 0)", cxxopts::value<std::string>()->default_value(""))
    ("metrics-json", "Write per-epoch metrics of every model to PATH", cxxopts::value<std::string>()->default_value(""))
    ("log-level", "trace, debug, info, warn, error, critical or off", cxxopts::value<std::string>()->default_value("info"))
    ("lr-schedule", "constant or cosine (decay to 0 over the run), for every model", cxxopts::value<std::string>()->default_value("cosine"))
    ("no-progress", "No progress bar, even on a terminal")
    ("h,help", "Print this help");
  // clang-format on
  add_ternary_recipe_options(options, kDefaultScaleMode, kDefaultThresholdFactor);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    set_log_level(args["log-level"].as<std::string>());
    Config config;
    config.epochs = args["epochs"].as<int64_t>();
    config.batch_size = args["batch-size"].as<int64_t>();
    config.lr = args["lr"].as<double>();
    config.ternary_lr = args.count("ternary-lr") ? args["ternary-lr"].as<double>() : config.lr;
    config.seed = args["seed"].as<uint64_t>();
    config.dataset = args["dataset"].as<std::string>();
    config.data_dir = args["data-dir"].as<std::string>();
    config.train_limit = args["train-limit"].as<int64_t>();
    config.test_limit = args["test-limit"].as<int64_t>();
    config.save_path = args["save"].as<std::string>();
    config.export_path = args["export"].as<std::string>();
    config.load_path = args["load"].as<std::string>();
    config.metrics_json = args["metrics-json"].as<std::string>();
    config.progress = !args.count("no-progress");
    const auto schedule = args["lr-schedule"].as<std::string>();
    if (schedule != "constant" && schedule != "cosine") {
      throw UsageError("--lr-schedule must be constant or cosine, not '" + schedule + "'");
    }
    config.cosine_decay = schedule == "cosine";
    config.recipe = parse_ternary_recipe(args);
    const bool compare = args.count("compare") > 0;
    const bool fp32_only = args.count("no-ternary") > 0;

    if (config.epochs < 0) throw UsageError("--epochs must be >= 0");
    if (config.batch_size < 1) throw UsageError("--batch-size must be >= 1");
    if (!(config.lr > 0) || !(config.ternary_lr > 0)) throw UsageError("--lr and --ternary-lr must be > 0");
    if (config.train_limit < 0 || config.test_limit < 0) throw UsageError("--train-limit and --test-limit must be >= 0");
    const std::string default_dir = default_data_dir(config.dataset);
    if (config.data_dir.empty()) config.data_dir = default_dir;
    if (compare && fp32_only) throw UsageError("--compare and --no-ternary exclude each other");
    if (fp32_only && !config.export_path.empty()) throw UsageError("--export writes the ternary model: drop --no-ternary");
    if (compare && (!config.save_path.empty() || !config.load_path.empty())) {
      throw UsageError("--save and --load work on one model: drop --compare");
    }
    if (config.epochs == 0 && config.load_path.empty()) {
      throw UsageError("--epochs 0 only makes sense with --load (evaluate a checkpoint)");
    }
    const auto device = select_device(args.count("cuda") ? "cuda" : args["device"].as<std::string>());

    const auto train_split = load_split(config.dataset, config.data_dir, IdxDataset::Split::Train, config.train_limit, device);
    const auto test_split = load_split(config.dataset, config.data_dir, IdxDataset::Split::Test, config.test_limit, device);
    std::vector<std::string> kinds;
    if (compare || fp32_only) kinds.push_back("fp32");
    if (!fp32_only) kinds.push_back("ternary");
    std::vector<RunMetrics> runs;
    for (const auto& kind : kinds) runs.push_back(train(kind, config, train_split, test_split, device));
    print_summary(runs);
    if (!config.metrics_json.empty()) {
      write_metrics_json(config.metrics_json, config.dataset, device.str(), runs);
      spdlog::info("metrics written to {}", config.metrics_json);
    }
    return 0;
  });
}
