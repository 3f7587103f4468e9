// bittorch-lm train: the full-precision and ternary models on the same batches, with AdamW,
// warmup and cosine decay, clipping, accumulation, BF16 autocast on the GPU, validation loss
// in nats and bits per byte, metrics JSON, checkpoints and resume.

#include "common/cli.h"
#include "common/launch.h"
#include "common/models.h"
#include "common/training_run.h"
#include "lm/commands.h"
#include "lm/lm_model.h"
#include "lm/text_corpus.h"

#include <bittorch/distributed/data_parallel.h>
#include <bittorch/train.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

namespace bittorch::apps {
namespace {

struct TrainConfig {
  nn::TransformerOptions model;
  std::vector<std::string> kinds;
  quant::QuantConfig recipe;                // of the ternary model
  uint32_t train_crc32 = 0, val_crc32 = 0;  // of the texts: a resumed run must read the same
  std::string train_file, val_file, save_path, resume_path, metrics_json, export_path, tokenizer_path;
  std::shared_ptr<const io::Tokenizer> tokenizer;  // null: byte tokens
  double val_bytes_per_token = 1;                  // of the validation text: bits per byte from a token's loss
  int64_t steps = 0, batch_size = 0, accumulation = 1, warmup = 0, eval_interval = 0, eval_windows = 0,
          stop_after_eval = 0, sample_bytes = 0;
  double lr = 0, ternary_lr = 0, final_lr_factor = 0, weight_decay = 0, ternary_decay_until = 1, grad_clip = 0;
  uint64_t seed = 0;
  bool bf16 = false, progress = true, bf16_gradients = false, checkpoint_activations = false, shard_optimizer = false,
       shard_gradients = false, cuda_graph = false;
};

constexpr double kLn2 = 0.6931471805599453;

// BitNet b1.58's two-stage recipe: weight decay until `until` of the run, then none (the
// ternary weights settle). Depends on the step alone, so a resumed run agrees.
void set_weight_decay(torch::optim::AdamW& optimizer, double weight_decay, bool on) {
  auto& matrices = static_cast<torch::optim::AdamWOptions&>(optimizer.param_groups()[0].options());
  matrices.weight_decay(on ? weight_decay : 0.0);
}

// The mean loss over the evaluation windows; under data parallelism the ranks take turns
// with the batches of windows and the sums are all-reduced.
double validation_loss(nn::TransformerLM& model, const TextBatches& val, const TrainConfig& config,
                       distributed::DataParallel* parallel) {
  const int64_t rank = parallel != nullptr ? parallel->rank() : 0,
                ranks = parallel != nullptr ? parallel->world_size() : 1;
  double sum = 0, windows = 0;
  int64_t batch_index = 0;
  for (int64_t first = 0; first < config.eval_windows; first += config.batch_size, ++batch_index) {
    if (batch_index % ranks != rank) continue;
    const int64_t batch = std::min(config.batch_size, config.eval_windows - first);
    const auto [inputs, targets] = val.spaced(batch, first, config.eval_windows);
    sum += next_byte_loss(model, inputs, targets, config.bf16).item<double>() * static_cast<double>(batch);
    windows += static_cast<double>(batch);
  }
  if (parallel != nullptr) {
    sum = parallel->sum_over_ranks(sum);
    windows = parallel->sum_over_ranks(windows);
  }
  return sum / windows;
}

// A model whose training and validation losses over a whole evaluation interval are both
// ln(vocabulary), to float32's precision, predicts every token with the same probability: its
// weights are gone (an AdamW decay that erases them, a learning rate that blew them up).
// Such a run ends with an error rather than train on.
void check_not_collapsed(const nlohmann::json& record, const std::string& kind, const TrainConfig& config) {
  const double uniform = std::log(static_cast<double>(config.model.vocab_size()));
  const auto at_uniform = [&](const char* field) {
    return std::abs(record.at(field).get<double>() - uniform) < 1e-5 * uniform;
  };
  TORCH_CHECK(!at_uniform("train_loss") || !at_uniform("val_loss"), kind, ": the model has collapsed: its training ",
              "and validation losses over the last ", config.eval_interval, " steps are ln(", config.model.vocab_size(),
              ") = ", uniform, ", the loss of predicting every token with the same probability; try a lower ",
              kind == "ternary" ? "--ternary-lr" : "--lr", " or --weight-decay");
}

// Each rank's peak GPU memory of the run, in the entry as peak_memory_bytes (one figure per rank;
// every rank takes part). Nothing on the CPU.
void record_peak_memory(torch::Device device, TrainingRun& run, const std::string& kind) {
  if (!device.is_cuda()) return;
  auto* const parallel = run.parallel();
  const int64_t ranks = parallel != nullptr ? parallel->world_size() : 1, rank = parallel ? parallel->rank() : 0;
  auto peaks = torch::zeros({ranks}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  peaks[rank] = peak_memory_bytes(device);
  if (parallel != nullptr) peaks = parallel->sum_over_ranks(peaks);
  const auto values = peaks.cpu();
  run.entry()["peak_memory_bytes"] =
      std::vector<double>(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
  spdlog::info("{}: peak GPU memory {:.2f} GiB (the most of any rank)", kind, values.max().item<double>() / (1 << 30));
}

// Trains the model of `kind`; its entry in `metrics` is rewritten after every evaluation.
void train_one(const std::string& kind, const TrainConfig& config, const TextBatches& train, const TextBatches& val,
               torch::Device device, const ProcessRanks& ranks, train::MetricsLog& metrics) {
  const bool ternary = kind == "ternary";
  torch::manual_seed(config.seed);  // the same initial weights for both models
  reset_peak_memory(device);
  auto model = make_lm(config.model, ternary ? std::optional(config.recipe) : std::nullopt);
  model->set_activation_checkpointing(config.checkpoint_activations);
  model->to(device);
  const double lr = ternary ? config.ternary_lr : config.lr;
  auto optimizer = make_optimizer(*model, lr, config.weight_decay,
                                  config.shard_optimizer ? ranks.group : c10::intrusive_ptr<c10d::ProcessGroup>());
  auto parallel_options = distributed::DataParallelOptions().bf16_gradients(config.bf16_gradients);
  if (config.shard_gradients && ranks.group) {
    const auto* sharded = dynamic_cast<const train::ShardedAdamW*>(optimizer.get());
    parallel_options.gradient_owner([sharded](const at::Tensor& parameter) { return sharded->owner(parameter); });
  }
  const auto schedule = train::LrScheduleOptions()
                            .warmup_steps(std::min(config.warmup, config.steps))
                            .total_steps(config.steps)
                            .decay(train::LrDecay::Cosine)
                            .final_factor(config.final_lr_factor);
  const double decay_until = ternary ? config.ternary_decay_until : 1.0;
  const auto quant = quant_json(ternary ? std::optional(config.recipe) : std::nullopt);
  TrainingRun run(*model, *optimizer,
                  train::TrainerOptions(config.steps, config.eval_interval)
                      .accumulation_steps(config.accumulation)
                      .max_grad_norm(config.grad_clip)
                      .schedule(schedule)
                      .stop_after_epoch(config.stop_after_eval)
                      .label(kind)
                      .unit("tokens")
                      .progress(config.progress ? train::ProgressStyle::Auto : train::ProgressStyle::Lines)
                      .loss_check_every(50)
                      .checkpoint_path(config.save_path)
                      .divergence_hint(ternary ? "try a lower --ternary-lr" : "try a lower --lr")
                      .device(device)
                      .cuda_graph(config.cuda_graph),
                  ranks, metrics,
                  {{"model", kind},
                   {"parameters", parameter_count(*model)},
                   {"lr", lr},
                   {"activation_bits", ternary ? config.recipe.activation_bits() : 0},
                   {"gradient_bits", ternary ? config.recipe.gradient_bits() : 0},
                   {"weight_decay_until", decay_until}},
                  parallel_options);
  run.begin({{"model", nlohmann::json::parse(nn::to_json(config.model))},
             {"quant", quant},
             // Tokens (bytes without a tokenizer: the names of older checkpoints kept).
             {"train_bytes", train.size()},
             {"val_bytes", val.size()},
             {"train_crc32", config.train_crc32},
             {"val_crc32", config.val_crc32},
             // Over all ranks: a run resumes on another number of processes
             // with --batch-size scaled to keep it (the batches are the same).
             {"batch_size", config.batch_size * ranks.count},
             {"lr", lr},
             {"weight_decay", config.weight_decay},
             {"weight_decay_until", decay_until},
             {"eval_windows", config.eval_windows},
             {"bf16", config.bf16},
             {"seed", config.seed}},
            config.resume_path);

  train::TrainerHooks hooks;
  // Each micro-step's batch, where the step reads it: with a CUDA graph the step is recorded
  // once and replayed, reading these same tensors.
  std::vector<torch::Tensor> batch_inputs(static_cast<size_t>(config.accumulation)), batch_targets(batch_inputs);
  hooks.load_batch = [&](const train::StepContext& c) {
    if (c.micro_step == 0) {
      set_weight_decay(*optimizer, config.weight_decay, c.step < decay_until * static_cast<double>(config.steps));
    }
    const auto [inputs, targets] = train.random(config.batch_size, config.seed,
                                                c.step * config.accumulation + c.micro_step, ranks.rank, ranks.count);
    auto& slot_inputs = batch_inputs[static_cast<size_t>(c.micro_step)];
    auto& slot_targets = batch_targets[static_cast<size_t>(c.micro_step)];
    if (!slot_inputs.defined()) {
      slot_inputs = inputs.clone();
      slot_targets = targets.clone();
    } else {
      slot_inputs.copy_(inputs);
      slot_targets.copy_(targets);
    }
  };
  hooks.step = [&](const train::StepContext& c) {
    const auto& inputs = batch_inputs[static_cast<size_t>(c.micro_step)];
    return train::StepOutput{
        next_byte_loss(model, inputs, batch_targets[static_cast<size_t>(c.micro_step)], config.bf16), inputs.numel()};
  };
  hooks.evaluate = [&] {
    const double loss = validation_loss(model, val, config, run.parallel());
    return nlohmann::json{{"val_loss", loss}, {"val_bits_per_byte", loss / kLn2 / config.val_bytes_per_token}};
  };
  hooks.epoch_end = [&](const nlohmann::json& record) {
    check_not_collapsed(record, kind, config);
    double best = INFINITY;
    for (const auto& record : run.trainer().history()) best = std::min(best, record.at("val_loss").get<double>());
    run.entry()["evaluations"] = run.trainer().history();
    if (std::isfinite(best)) run.entry()["best_val_loss"] = best;
  };
  const bool finished = run.fit(hooks);
  if (const auto* sharded = dynamic_cast<const train::ShardedAdamW*>(optimizer.get())) {
    spdlog::info("{}: rank {} holds {:.1f} MB of AdamW state (sharded over {} ranks)", kind, ranks.rank,
                 sharded->state_bytes() / 1e6, ranks.count);
    if (finished) run.entry()["optimizer_state_bytes_rank0"] = sharded->state_bytes();
  }
  record_peak_memory(device, run, kind);
  if (!finished) return;  // rank 0 alone reports, exports and samples
  if (run.parallel() != nullptr) {
    if (const auto times = run.parallel()->last_communication_times()) {
      run.entry()["all_reduce"] = {{"step", times->iteration},
                                   {"backward_compute_ms", times->backward_compute_ms},
                                   {"all_reduce_ms", times->all_reduce_ms},
                                   {"overlap_ms", times->overlap_ms},
                                   {"exposed_ms", times->exposed_ms()}};
      spdlog::info("{}: step {}: backward {:.2f} ms, all-reduce {:.2f} ms, of which {:.2f} ms after the backward", kind,
                   times->iteration, times->backward_compute_ms, times->all_reduce_ms, times->exposed_ms());
    }
  }
  if (ternary && !config.export_path.empty()) {
    model->eval();
    nn::pack(*model);
    io::save_packed(*model, config.export_path, torch::kBFloat16);
    spdlog::info("ternary: exported {} ({} bytes)", config.export_path, io::regular_file_size(config.export_path));
  }
  if (config.sample_bytes > 0) {
    // The defaults of bittorch-lm sample, so its output of the same model is this text.
    model->eval();
    const auto options = nn::GenerateOptions().max_new_tokens(config.sample_bytes).temperature(0.8).top_k(40);
    run.entry()["sample"] = continue_text(*model, "\n", options, config.tokenizer.get()).front();
    std::cout << fmt::format("--- {} model, {} tokens sampled ---{}\n", kind, config.sample_bytes,
                             run.entry()["sample"].get<std::string>());
  }
  run.report();
}

// Each model's best validation loss, in nats per token and bits per byte (`bytes_per_token` of
// the validation text), and its training throughput.
void print_summary(const nlohmann::json& runs, double bytes_per_token) {
  std::cout << fmt::format("\n{:<8}  {:>11}  {:>14}  {:>14}  {:>12}\n", "model", "parameters", "best val loss",
                           "bits per byte", "tokens/s");
  for (const auto& run : runs) {
    if (!run.contains("best_val_loss")) continue;
    double tokens_per_second = 0;
    for (const auto& e : run["evaluations"]) tokens_per_second += e["tokens_per_second"].get<double>();
    tokens_per_second /= static_cast<double>(run["evaluations"].size());
    const double best = run["best_val_loss"].get<double>();
    std::cout << fmt::format("{:<8}  {:>10.2f}M  {:>14.4f}  {:>14.4f}  {:>12.0f}\n", run["model"].get<std::string>(),
                             run["parameters"].get<int64_t>() / 1e6, best, best / kLn2 / bytes_per_token,
                             tokens_per_second);
  }
}

TrainConfig parse_config(const cxxopts::ParseResult& args) {
  TrainConfig c;
  c.model = parse_model_options(args);
  const std::string kind = choice_flag(args, "model", {"fp", "ternary"});
  c.kinds = args.count("compare") ? std::vector<std::string>{"fp", "ternary"} : std::vector<std::string>{kind};
  c.recipe = parse_ternary_recipe(args);
  c.steps = integer_flag(args, "steps", 1);
  c.batch_size = integer_flag(args, "batch-size", 1);
  c.accumulation = integer_flag(args, "accumulation", 1);
  c.warmup = integer_flag(args, "warmup", 0);
  c.eval_interval = integer_flag(args, "eval-interval", 1);
  c.eval_windows = integer_flag(args, "eval-windows", 1);
  c.stop_after_eval = integer_flag(args, "stop-after-eval", 0);
  c.sample_bytes = integer_flag(args, "sample", 0);
  if (c.sample_bytes > kMaxGeneratedBytes) {
    throw UsageError(fmt::format("--sample must be at most {} bytes, not {}", kMaxGeneratedBytes, c.sample_bytes));
  }
  c.lr = positive_flag(args, "lr");
  c.ternary_lr = positive_flag(args, "ternary-lr");
  c.final_lr_factor = number_flag(args, "final-lr-factor");
  if (c.final_lr_factor < 0 || c.final_lr_factor > 1) throw UsageError("--final-lr-factor must be in [0, 1]");
  c.weight_decay = number_flag(args, "weight-decay");
  if (c.weight_decay < 0) throw UsageError("--weight-decay must be >= 0");
  // AdamW multiplies every matrix by 1 - lr * weight_decay each step: at 1 or more that alone
  // erases the weights.
  for (const auto& kind : c.kinds) {
    const bool ternary = kind == "ternary";
    const char* flag = ternary ? "--ternary-lr" : "--lr";
    const double lr = ternary ? c.ternary_lr : c.lr;
    if (lr * c.weight_decay >= 1) {
      throw UsageError(
          fmt::format("{} x --weight-decay is {} ({} x {}): AdamW's decay alone would erase the weights "
                      "every step; it must stay below 1",
                      flag, lr * c.weight_decay, lr, c.weight_decay));
    }
  }
  c.ternary_decay_until = number_flag(args, "ternary-decay-until");
  if (c.ternary_decay_until < 0 || c.ternary_decay_until > 1)
    throw UsageError("--ternary-decay-until must be in [0, 1]");
  c.grad_clip = number_flag(args, "grad-clip");
  if (c.grad_clip < 0) throw UsageError("--grad-clip must be >= 0 (0: no clipping)");
  c.seed = static_cast<uint64_t>(integer_flag(args, "seed", 0));
  const std::string data_dir = args["data-dir"].as<std::string>().empty() ? embedded_data_dir("shakespeare")
                                                                          : args["data-dir"].as<std::string>();
  // A text of one's own is validated on text of one's own, never silently on Shakespeare.
  if (args.count("train-file") && !args.count("val-file") && args["data-dir"].as<std::string>().empty()) {
    throw UsageError("--train-file needs --val-file (held-out text to validate on) or --data-dir with val.txt.gz");
  }
  c.train_file = args.count("train-file") ? args["train-file"].as<std::string>() : data_dir + "/train.txt.gz";
  c.val_file = args.count("val-file") ? args["val-file"].as<std::string>() : data_dir + "/val.txt.gz";
  c.save_path = args["save"].as<std::string>();
  c.resume_path = args["resume"].as<std::string>();
  c.metrics_json = args["metrics-json"].as<std::string>();
  c.export_path = args["export"].as<std::string>();
  if (args.count("tokenizer")) c.tokenizer_path = args["tokenizer"].as<std::string>();
  c.progress = !args.count("no-progress");
  c.bf16_gradients = args.count("bf16-gradients") > 0;
  c.checkpoint_activations = args.count("checkpoint-activations") > 0;
  c.cuda_graph = !args.count("no-cuda-graph");
  c.shard_gradients = args.count("shard-gradients") > 0;
  c.shard_optimizer = args.count("shard-optimizer") > 0 || c.shard_gradients;
  if (args.count("compare") && (!c.save_path.empty() || !c.resume_path.empty())) {
    throw UsageError("--save and --resume work on one model: drop --compare");
  }
  if (c.stop_after_eval > 0 && c.save_path.empty()) {
    throw UsageError("--stop-after-eval needs --save: the run is to be resumed from a checkpoint");
  }
  if (!c.export_path.empty() && std::find(c.kinds.begin(), c.kinds.end(), "ternary") == c.kinds.end()) {
    throw UsageError("--export writes the ternary model: use --model ternary or --compare");
  }
  return c;
}

}  // namespace

int train_command(int argc, char** argv) {
  cxxopts::Options options("bittorch-lm train",
                           "Train a transformer language model on bytes or a tokenizer's tokens, FP or ternary "
                           "(under torchrun: data parallel, --batch-size per process)");
  // clang-format off
  options.add_options()
    ("model", "fp (torch::nn::Linear projections) or ternary (TernaryLinear; --scale-mode and the flags after it)",
     text_flag("ternary"))
    ("compare", "Train the fp and the ternary model on the same batches and compare them")
    ("steps", "Optimizer steps", text_flag("300"))
    ("batch-size", "Sequences per micro-batch (per process under torchrun)", text_flag("32"))
    ("accumulation", "Micro-batches per optimizer step (gradients averaged)", text_flag("1"))
    ("lr", "Peak AdamW learning rate of the fp model", text_flag("0.001"))
    ("ternary-lr", "Peak AdamW learning rate of the ternary model (BitNet trains ternary models hotter)",
     text_flag("0.003"))
    ("warmup", "Linear warmup steps", text_flag("100"))
    ("final-lr-factor", "The cosine decay ends at this fraction of the peak", text_flag("0.1"))
    ("weight-decay", "AdamW weight decay of the matrices", text_flag("0.1"))
    ("ternary-decay-until", "Fraction of the run after which the ternary model's weight decay is 0 (BitNet b1.58's "
                            "two stages; 1: throughout)", text_flag("0.5"))
    ("grad-clip", "Clip the gradients' global norm (0: no clipping)", text_flag("1.0"))
    ("eval-interval", "Steps between validation losses (and checkpoints)", text_flag("100"))
    ("eval-windows", "Validation windows of one context each, evenly spaced over the file", text_flag("64"))
    ("stop-after-eval", "End this run after evaluation N (with --save; continue with --resume)", text_flag("0"))
    ("seed", "Random seed (initial weights and batches)", text_flag("0"))
    ("precision", "auto (BF16 autocast on CUDA, FP32 on the CPU), fp32 or bf16", text_flag("auto"))
    ("data-dir", "Directory with train.txt.gz and val.txt.gz (default: the embedded Shakespeare)", text_flag(""))
    ("train-file", "Training text, UTF-8 or ASCII, gzipped or not (default: DATA_DIR/train.txt.gz)",
     cxxopts::value<std::string>())
    ("val-file", "Validation text (default: DATA_DIR/val.txt.gz; required with --train-file unless --data-dir)",
     cxxopts::value<std::string>())
    ("save", "Write a checkpoint to PATH after every evaluation", text_flag(""))
    ("resume", "Continue the run of the checkpoint at PATH", text_flag(""))
    ("export", "Write the trained ternary model as a packed model file to PATH", text_flag(""))
    ("metrics-json", "Write every evaluation of every model to PATH as the run goes", text_flag(""))
    ("sample", "After training, print N tokens generated by each model (as bittorch-lm sample does; also in the "
               "metrics)", text_flag("0"))
    ("tokenizer", "A Hugging Face tokenizer.json (byte-level BPE): train on its tokens, the vocabulary its size "
                  "(default: bytes, a vocabulary of 256)", cxxopts::value<std::string>())
    ("bf16-gradients", "Under torchrun: all-reduce the gradients in bfloat16 (half the bytes)")
    ("shard-optimizer", "Under torchrun: each rank keeps and updates 1/N of the AdamW state (ZeRO stage 1); "
                        "checkpoints stay whole")
    ("shard-gradients", "Under torchrun: also each gradient summed on the rank that updates its parameter and freed "
                        "on the others (ZeRO stage 2; implies --shard-optimizer)")
    ("checkpoint-activations", "Keep only each block's inputs for the backward and recompute the block there: "
                               "less memory, a second forward of the blocks; the same gradients")
    ("no-cuda-graph", "Run every step eagerly. By default, on one CUDA GPU in one process, each step's forward and "
                      "backward are recorded in a CUDA graph after two eager steps and replayed: one launch instead "
                      "of thousands, the same arithmetic")
    ("no-progress", "No progress bar, even on a terminal");
  // clang-format on
  // BitNet b1.58's ternary recipe: absmean scales (the threshold applies to max scales only).
  add_ternary_recipe_options(options, "absmean", 0.05);
  add_launch_options(options);
  add_model_options(options);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    TrainConfig config = parse_config(args);
    check_path_flags(args, {"save", "export", "metrics-json"}, {"resume", "train-file", "val-file", "tokenizer"},
                     {{"save", "resume"}});
    if (!config.tokenizer_path.empty()) {
      config.tokenizer = std::make_shared<io::Tokenizer>(io::Tokenizer::from_file(config.tokenizer_path));
      config.model.vocab_size(config.tokenizer->vocab_size());
    }
    auto device = selected_device(args);
    const ProcessRanks ranks = join_launch(device, args);
    // The recorded step is CUDA's, and does not yet take data parallelism's collectives.
    config.cuda_graph = config.cuda_graph && device.is_cuda() && ranks.count == 1;
    // Rank 0 writes the metrics; its Trainer alone checkpoints and shows progress, and the
    // other ranks return before exporting.
    if (!ranks.leader()) config.metrics_json.clear();
    check_training_fits(config.model, config.batch_size, device);
    const std::string precision = choice_flag(args, "precision", {"auto", "fp32", "bf16"});
    if (precision == "bf16" && !device.is_cuda()) throw UsageError("--precision bf16 needs a CUDA device");
    config.bf16 = precision == "bf16" || (precision == "auto" && device.is_cuda());
    const int64_t window = config.model.context() + 1;
    // The texts as tokens: their bytes, or the tokenizer's ids; their CRC-32 in checkpoints (a
    // resumed run must read the same tokens).
    const auto tokens_of = [&](const std::string& path, const char* flag) {
      auto bytes = read_text_bytes(path, window, flag);
      if (!config.tokenizer) return std::pair{bytes, bytes.numel()};
      auto ids = tokenize_text(bytes, *config.tokenizer, path);
      TORCH_CHECK(ids.numel() > window, path, " holds ", ids.numel(),
                  " tokens of --tokenizer, too few for one window of ", window, " (the context + 1); give ", flag,
                  " a longer text or a shorter --context");
      return std::pair{ids, bytes.numel()};
    };
    const auto [train_tokens, train_bytes] = tokens_of(config.train_file, "--train-file");
    const auto [val_tokens, val_bytes] = tokens_of(config.val_file, "--val-file");
    config.train_crc32 = tensor_crc32(train_tokens);
    config.val_crc32 = tensor_crc32(val_tokens);
    config.val_bytes_per_token = static_cast<double>(val_bytes) / static_cast<double>(val_tokens.numel());
    const TextBatches train(train_tokens, config.model.context(), device);
    const TextBatches val(val_tokens, config.model.context(), device);
    // Evaluation windows start at distinct offsets: no more than the validation text has.
    if (config.eval_windows > val.size() - config.model.context()) {
      throw UsageError(fmt::format("--eval-windows must be at most {} (the windows of {} tokens in {}), not {}",
                                   val.size() - config.model.context(), window, config.val_file, config.eval_windows));
    }
    spdlog::info("data: {} training and {} validation tokens{}; context {}, {} x {} tokens per step", train.size(),
                 val.size(),
                 config.tokenizer ? fmt::format(" ({:.2f} bytes per token)", config.val_bytes_per_token) : "",
                 config.model.context(), config.batch_size * config.accumulation * ranks.count, config.model.context());
    train::MetricsLog metrics(config.metrics_json, {{"train_file", config.train_file},
                                                    {"val_file", config.val_file},
                                                    {"tokenizer", config.tokenizer_path},
                                                    {"val_bytes_per_token", config.val_bytes_per_token},
                                                    {"device", device.str()},
                                                    {"bf16", config.bf16},
                                                    {"steps", config.steps},
                                                    {"tokens_per_step", config.batch_size * config.accumulation *
                                                                            ranks.count * config.model.context()},
                                                    {"model", nlohmann::json::parse(nn::to_json(config.model))}});
    for (const auto& kind : config.kinds) train_one(kind, config, train, val, device, ranks, metrics);
    ranks.finish();
    if (!ranks.leader()) return 0;
    print_summary(metrics.document()["runs"], config.val_bytes_per_token);
    if (!config.metrics_json.empty()) spdlog::info("metrics written to {}", config.metrics_json);
    return 0;
  });
}

}  // namespace bittorch::apps
