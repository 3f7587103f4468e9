// bittorch-mnist: trains a 784-256-128-10 MLP on MNIST or Fashion-MNIST with TernaryLinear
// or torch::nn::Linear layers, or both side by side (--compare).

#include "common/cli.h"
#include "common/evaluation.h"
#include "common/idx_dataset.h"
#include "common/launch.h"
#include "common/models.h"
#include "common/training_run.h"

#include <bittorch/distributed/data_parallel.h>
#include <bittorch/train.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

namespace {

using namespace bittorch::apps;

// The trainer's own ternary recipe, chosen by a sweep over scale modes, thresholds and
// learning rates (docs/results.md, MNIST, "Choosing the ternary recipe"): max scaling with a
// threshold of 0.2 instead of the library's 0.05, at the FP32 model's learning rate, with the
// cosine schedule both models share.
constexpr const char* kDefaultScaleMode = "max";
constexpr double kDefaultThresholdFactor = 0.2;

const std::vector<int64_t> kLayerSizes = {784, 256, 128, 10};

struct Config {
  std::string dataset, data_dir, metrics_json, save_path, load_path, resume_path, export_path;
  int64_t epochs = 5, batch_size = 128, train_limit = 0, test_limit = 0, stop_after_epoch = 0;
  double lr = 1e-3, ternary_lr = 1e-3;
  uint64_t seed = 42;
  bittorch::quant::QuantConfig recipe;
  bool progress = true;
  bool cosine_decay = false;
};

// What a resumed run must share with the run it resumes (the trainer adds its own: steps per
// epoch, schedule): anything else would train another trajectory.
nlohmann::json run_settings(const Config& config, const Split& train_split, double lr, int64_t processes) {
  return {{"dataset", config.dataset},
          {"train_samples", train_split.size()},
          // The images and labels themselves: another set of the same size is another run.
          {"train_crc32", tensor_crc32(train_split.inputs) ^ tensor_crc32(train_split.targets)},
          {"batch_size", config.batch_size * processes},  // over all processes of a torchrun launch
          {"lr", lr},
          {"seed", config.seed}};
}

// The cosine schedule spans the run's --epochs; a constant rate lets a resumed run extend it.
bittorch::train::LrScheduleOptions lr_schedule(const Config& config, int64_t total_steps) {
  using bittorch::train::LrDecay;
  const bool cosine = config.cosine_decay && total_steps > 0;
  return bittorch::train::LrScheduleOptions()
      .decay(cosine ? LrDecay::Cosine : LrDecay::Constant)
      .total_steps(cosine ? total_steps : 0);
}

nlohmann::json weights_json(const torch::nn::Sequential& model) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : describe_weights(model)) {
    nlohmann::json entry = {
        {"layer", layer.name}, {"fp32_bytes", layer.fp32_bytes}, {"ternary_bytes", layer.ternary_bytes}};
    if (layer.zero_fraction) entry["zero_fraction"] = *layer.zero_fraction;
    layers.push_back(entry);
  }
  return layers;
}

double mean_epoch_seconds(const nlohmann::json& epochs) {
  double sum = 0;
  for (const auto& e : epochs) sum += e.at("seconds").get<double>();
  return epochs.empty() ? 0.0 : sum / static_cast<double>(epochs.size());
}

// Trains (or, with --epochs 0, evaluates) the model of `kind`; its entry in `metrics` is
// rewritten after every epoch.
void train(const std::string& kind, const Config& config, const Split& train_split, const Split& test,
           torch::Device device, const ProcessRanks& ranks, bittorch::train::MetricsLog& metrics) {
  const bool ternary = kind == "ternary";
  torch::manual_seed(config.seed);  // same initial weights for both models
  auto model = make_mlp(kLayerSizes, ternary ? std::optional(config.recipe) : std::nullopt);
  model->to(device);
  const double lr = ternary ? config.ternary_lr : config.lr;
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(lr));
  // Under torchrun a step's batch is --batch-size samples per process.
  const int64_t global_batch = config.batch_size * ranks.count;
  const int64_t batches = (train_split.size() + global_batch - 1) / global_batch;
  nlohmann::json entry = {{"model", kind},
                          {"lr", lr},
                          {"batch_size", config.batch_size},
                          {"seed", config.seed},
                          {"lr_schedule", config.cosine_decay ? "cosine" : "constant"}};
  if (ternary) {
    entry["scale_mode"] = bittorch::quant::to_string(config.recipe.scale_mode());
    entry["threshold_factor"] = config.recipe.threshold_factor();
    entry["activation_bits"] = config.recipe.activation_bits();
    entry["gradient_bits"] = config.recipe.gradient_bits();
  }
  TrainingRun run(
      *model, optimizer,
      bittorch::train::TrainerOptions(config.epochs * batches, batches)
          .stop_after_epoch(config.stop_after_epoch)
          .schedule(lr_schedule(config, config.epochs * batches))
          .label(kind)
          .progress(config.progress ? bittorch::train::ProgressStyle::Auto : bittorch::train::ProgressStyle::Lines)
          .checkpoint_path(config.save_path)
          .divergence_hint("try a lower --lr")
          .device(device),
      ranks, metrics, entry);
  const auto record_epochs = [&](double accuracy) {
    const auto& epochs = run.trainer().history();
    run.entry()["epochs"] = epochs;
    run.entry()["final_test_accuracy"] = accuracy;
    run.entry()["mean_epoch_seconds"] = mean_epoch_seconds(epochs);
  };

  if (!config.load_path.empty()) {
    bittorch::train::load_checkpoint(config.load_path, *model, nullptr, bittorch::train::describe_model(*model, kind),
                                     device);
    spdlog::info("{}: loaded the weights of {}", kind, config.load_path);
  }
  run.begin(run_settings(config, train_split, lr, ranks.count), config.resume_path);
  // LibTorch's loader over the split: global batches in a RandomSampler's order, reseeded from
  // the run's seed and the epoch, so that every model sees the same batches in the same order
  // (and a resumed run the batches the interrupted one would have seen); each process takes its
  // shard of every batch.
  auto loader = torch::data::make_data_loader(SplitBatches(train_split, ranks.rank, ranks.count),
                                              torch::data::samplers::RandomSampler(train_split.size()),
                                              torch::data::DataLoaderOptions(global_batch));
  std::optional<decltype(loader->begin())> batch;
  bittorch::train::TrainerHooks hooks;
  hooks.step = [&](const bittorch::train::StepContext& context) {
    if (context.step_in_epoch == 0) {
      torch::manual_seed(config.seed * 1000 + context.epoch);
      batch = loader->begin();
    } else {
      ++*batch;
    }
    const auto& [inputs, targets] = **batch;
    const auto loss = torch::nn::functional::cross_entropy(model->forward(inputs), targets);
    return bittorch::train::StepOutput{loss, inputs.size(0)};
  };
  hooks.evaluate = [&] {
    const auto result = evaluate(model, test, run.parallel());
    return nlohmann::json{{"test_loss", result.loss}, {"test_accuracy", result.accuracy}};
  };
  hooks.epoch_end = [&](const nlohmann::json& record) { record_epochs(record.at("test_accuracy").get<double>()); };
  const int64_t epochs_before = run.trainer().epochs_done();
  if (!run.fit(hooks)) return;  // rank 0 alone reports and exports
  const auto& history = run.trainer().history();
  double accuracy = history.empty() ? 0.0 : history.back().at("test_accuracy").get<double>();
  if (run.trainer().epochs_done() == epochs_before) {
    accuracy = evaluate(model, test).accuracy;
    spdlog::info("{}: test accuracy {:.2f}% (evaluation only)", kind, accuracy);
  }
  run.entry()["weights"] = weights_json(model);
  if (ternary && !config.export_path.empty()) {
    // Exported, read back and evaluated: the accuracy bittorch-infer will print for this file.
    bittorch::io::save_packed(model, config.export_path);
    auto packed = bittorch::io::load_packed(config.export_path);
    packed->to(device);
    const auto exported = evaluate(packed, test);
    const int64_t file_bytes = bittorch::io::regular_file_size(config.export_path);
    spdlog::info("ternary: exported {} ({} bytes); packed model test accuracy {:.2f}%", config.export_path, file_bytes,
                 exported.accuracy);
    run.entry()["export"] = {
        {"path", config.export_path}, {"file_bytes", file_bytes}, {"packed_test_accuracy", exported.accuracy}};
  }
  record_epochs(accuracy);
  run.report();
}

std::string human_bytes(int64_t bytes) {
  if (bytes >= (1 << 20)) return fmt::format("{:.2f} MB", bytes / 1048576.0);
  return fmt::format("{:.1f} KB", bytes / 1024.0);
}

void print_summary(const nlohmann::json& runs) {
  std::cout << "\n"
            << fmt::format("{:<8}  {:>9}  {:>10}  {:>28}  {}\n", "model", "test acc", "mean epoch", "weight memory",
                           "zero weights per layer");
  for (const auto& run : runs) {
    int64_t fp32 = 0, packed = 0;
    std::string zeros;
    for (const auto& layer : run["weights"]) {
      fp32 += layer["fp32_bytes"].get<int64_t>();
      packed += layer["ternary_bytes"].get<int64_t>();
      if (layer.contains("zero_fraction")) {
        zeros += fmt::format("{}{:.1f}%", zeros.empty() ? "" : ", ", 100 * layer["zero_fraction"].get<double>());
      }
    }
    const std::string model = run["model"];
    const std::string memory = model == "ternary" ? fmt::format("{} -> {} ({:.1f}x)", human_bytes(fp32),
                                                                human_bytes(packed), static_cast<double>(fp32) / packed)
                                                  : fmt::format("{} (FP32)", human_bytes(fp32));
    std::cout << fmt::format("{:<8}  {:>8.2f}%  {:>8.2f} s  {:>28}  {}\n", model,
                             run["final_test_accuracy"].get<double>(), run["mean_epoch_seconds"].get<double>(), memory,
                             zeros.empty() ? "-" : zeros);
  }
}

Config parse_config(const cxxopts::ParseResult& args) {
  Config config;
  config.epochs = integer_flag(args, "epochs", 0);
  config.batch_size = integer_flag(args, "batch-size", 1);
  config.lr = positive_flag(args, "lr");
  config.ternary_lr = args.count("ternary-lr") ? positive_flag(args, "ternary-lr") : config.lr;
  config.seed = static_cast<uint64_t>(integer_flag(args, "seed", 0));
  config.dataset = choice_flag(args, "dataset", {"mnist", "fashion-mnist"});
  config.data_dir = args["data-dir"].as<std::string>();
  if (config.data_dir.empty()) config.data_dir = default_data_dir(config.dataset);
  config.train_limit = integer_flag(args, "train-limit", 0);
  config.test_limit = integer_flag(args, "test-limit", 0);
  config.stop_after_epoch = integer_flag(args, "stop-after-epoch", 0);
  config.save_path = args["save"].as<std::string>();
  config.export_path = args["export"].as<std::string>();
  config.load_path = args["load"].as<std::string>();
  config.resume_path = args["resume"].as<std::string>();
  config.metrics_json = args["metrics-json"].as<std::string>();
  config.progress = !args.count("no-progress");
  config.cosine_decay = choice_flag(args, "lr-schedule", {"constant", "cosine"}) == "cosine";
  config.recipe = parse_ternary_recipe(args);
  if (!config.load_path.empty() && !config.resume_path.empty()) {
    throw UsageError("--load (weights only) and --resume (the whole run) exclude each other");
  }
  if (config.epochs == 0 && config.load_path.empty()) {
    throw UsageError("--epochs 0 only makes sense with --load (evaluate a checkpoint)");
  }
  if (config.stop_after_epoch > 0 && config.save_path.empty()) {
    throw UsageError("--stop-after-epoch needs --save: the run is to be resumed from a checkpoint");
  }
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-mnist",
                           "Train an MLP (784-256-128-10) with ternary or FP32 weights on MNIST "
                           "(under torchrun: data parallel, --batch-size per process)");
  // clang-format off
  options.add_options()
    ("epochs", "Training epochs; the cosine schedule spans them (0 with --load: evaluate only)", text_flag("5"))
    ("batch-size", "Mini-batch size (per process under torchrun)", text_flag("128"))
    ("lr", "Adam learning rate of the FP32 model", text_flag("0.001"))
    ("ternary-lr", "Adam learning rate of the ternary model (default: --lr)", cxxopts::value<std::string>())
    ("lr-schedule", "constant or cosine (decay to 0 over the run), for every model", text_flag("cosine"))
    ("seed", "Random seed (initial weights and batch order)", text_flag("42"))
    ("dataset", "mnist or fashion-mnist", text_flag("mnist"))
    ("data-dir", "Directory with the four IDX files, gzipped or not (default: the embedded "
                 "mnist-10k for mnist, /usr/share/datasets/fashion-mnist for fashion-mnist)", text_flag(""))
    ("no-ternary", "Train the FP32 torch::nn::Linear model only")
    ("compare", "Train the FP32 and the ternary model on the same data and compare them")
    ("train-limit", "Use only the first N training images (0: all)", text_flag("0"))
    ("test-limit", "Use only the first N test images (0: all)", text_flag("0"))
    ("save", "Write a checkpoint to PATH after every epoch (atomically)", text_flag(""))
    ("load", "Start from the weights of the checkpoint at PATH (evaluate it with --epochs 0)", text_flag(""))
    ("resume", "Continue the run of the checkpoint at PATH: weights, optimizer, epoch and LR schedule", text_flag(""))
    ("stop-after-epoch", "End this run after epoch N of --epochs (with --save; continue with --resume)", text_flag("0"))
    ("export", "Write the trained ternary model as a packed model file to PATH (see bittorch-infer)", text_flag(""))
    ("metrics-json", "Write per-epoch metrics of every model to PATH, after every epoch", text_flag(""))
    ("no-progress", "No progress bar, even on a terminal");
  // clang-format on
  add_ternary_recipe_options(options, kDefaultScaleMode, kDefaultThresholdFactor);
  add_launch_options(options);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    Config config = parse_config(args);
    const bool compare = args.count("compare") > 0;
    const bool fp32_only = args.count("no-ternary") > 0;
    if (compare && fp32_only) throw UsageError("--compare and --no-ternary exclude each other");
    if (fp32_only && !config.export_path.empty())
      throw UsageError("--export writes the ternary model: drop --no-ternary");
    if (compare && (!config.save_path.empty() || !config.load_path.empty() || !config.resume_path.empty())) {
      throw UsageError("--save, --load and --resume work on one model: drop --compare");
    }
    check_path_flags(args, {"save", "export", "metrics-json"}, {"load", "resume"}, {{"save", "resume"}});
    auto device = selected_device(args);
    const ProcessRanks ranks = join_launch(device, args);
    // Rank 0 writes the metrics; its Trainer alone checkpoints and shows progress, and the
    // other ranks return before exporting.
    if (!ranks.leader()) config.metrics_json.clear();

    const auto train_split =
        load_split(config.dataset, config.data_dir, IdxDataset::Split::Train, config.train_limit, device);
    const auto test_split =
        load_split(config.dataset, config.data_dir, IdxDataset::Split::Test, config.test_limit, device);
    std::vector<std::string> kinds;
    if (compare || fp32_only) kinds.push_back("fp32");
    if (!fp32_only) kinds.push_back("ternary");
    // The metrics file is rewritten after every epoch: a run that dies keeps its results so far.
    bittorch::train::MetricsLog metrics(config.metrics_json, {{"dataset", config.dataset}, {"device", device.str()}});
    for (const auto& kind : kinds) train(kind, config, train_split, test_split, device, ranks, metrics);
    ranks.finish();
    if (!ranks.leader()) return 0;
    print_summary(metrics.document()["runs"]);
    if (!config.metrics_json.empty()) spdlog::info("metrics written to {}", config.metrics_json);
    return 0;
  });
}
