// bittorch-lm bench: training tokens/s (BF16 baseline, ternary, ternary with 8-bit
// activations, and with FP8 gradients too: --variants) and generation tokens/s (BF16 model
// against the packed ternary one) as the library decodes (nn::Decoder: the step replayed from
// a CUDA graph on the GPU) at batch 1 and 64, and as bittorch-lm sample runs it end to end,
// with weight memory and file size.

#include "common/cli.h"
#include "lm/commands.h"
#include "lm/lm_model.h"

#include <bittorch/io/files.h>
#include <bittorch/train.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#ifdef BITTORCH_LM_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <limits>

namespace bittorch::apps {
namespace {

struct BenchConfig {
  nn::TransformerOptions model;
  int64_t batch_size = 0, train_steps = 0, generate_tokens = 0;
  int64_t packed_activation_bits = 0;  // the generated-from packed model's: 0 (16-bit) or 8
  std::vector<std::string> parts, variants;
  std::string json_path;
  std::string profile_dir;  // where the profiler's traces go; empty: no profile
  bool checkpoint_activations = false, cuda_graph = false;
};

// The sequences of the batched decoding figure.
constexpr int64_t kBatchedSequences = 64;
// How many training steps a profile records (after the timed ones).
constexpr int64_t kProfiledSteps = 3;
// How many decode steps (batch 1) a profile records, after the timed ones.
constexpr int64_t kProfiledTokens = 16;
// Timed prefills of a whole-context prompt per model (the best one counts).
constexpr int kPrefillRepeats = 5;
// How many ops of a profile the JSON keeps (the trace has them all).
constexpr size_t kProfiledOpsKept = 40;

nlohmann::json profile_json(const train::ProfileSummary& summary, int64_t steps) {
  nlohmann::json ops = nlohmann::json::array();
  for (size_t i = 0; i < std::min(summary.ops.size(), kProfiledOpsKept); ++i) {
    const auto& op = summary.ops[i];
    ops.push_back({{"name", op.name},
                   {"calls", op.calls},
                   {"host_ms", op.host_ms},
                   {"device_ms", op.device_ms},
                   {"kernels", op.kernels}});
  }
  return {{"steps", steps}, {"wall_ms", summary.wall_ms}, {"device_busy_ms", summary.device_busy_ms}, {"ops", ops}};
}

bool wants(const BenchConfig& config, const std::string& part) {
  return std::find(config.parts.begin(), config.parts.end(), part) != config.parts.end();
}

// The training variants: the full-precision model, then ternary ones by their quantization.
const std::vector<std::string> kTrainVariants = {"baseline", "ternary", "ternary_a8", "ternary_a8_g8"};

// A variant's quantization (nullopt: the full-precision baseline): ternary_a8 with 8-bit
// activations, ternary_a8_g8 with FP8 e5m2 gradients in grad_input's product too.
std::optional<quant::QuantConfig> variant_config(const std::string& variant) {
  if (variant == "baseline") return std::nullopt;
  const bool eight_bit = variant == "ternary_a8" || variant == "ternary_a8_g8";
  return bitnet_config(eight_bit ? 8 : 0).gradient_bits(variant == "ternary_a8_g8" ? 8 : 0);
}

// Training tokens/s of one variant: an epoch of `steps` steps to warm up, then one timed.
nlohmann::json train_throughput(const BenchConfig& config, const std::string& variant, torch::Device device) {
  torch::manual_seed(0);
  auto model = make_lm(config.model, variant_config(variant));
  model->set_activation_checkpointing(config.checkpoint_activations);
  model->to(device);
  auto optimizer = make_optimizer(*model, 1e-4, 0.1);
  train::Trainer trainer(*model, *optimizer,
                         train::TrainerOptions(2 * config.train_steps, config.train_steps)
                             .max_grad_norm(1.0)
                             .label(variant)
                             .unit("tokens")
                             .progress(train::ProgressStyle::None)
                             .loss_check_every(config.train_steps)
                             .device(device)
                             .cuda_graph(config.cuda_graph));
  const int64_t context = config.model.context();
  const auto inputs =
      torch::randint(256, {config.batch_size, context + 1}, torch::TensorOptions().dtype(torch::kLong).device(device));
  train::TrainerHooks hooks;
  hooks.load_batch = [](const train::StepContext&) {};  // one batch, the same every step
  hooks.step = [&](const train::StepContext&) {
    return train::StepOutput{
        next_byte_loss(model, inputs.narrow(1, 0, context), inputs.narrow(1, 1, context), device.is_cuda()),
        config.batch_size * context};
  };
  reset_peak_memory(device);
  const auto& history = trainer.fit(hooks);
  const double tokens_per_second = history.back().at("tokens_per_second").get<double>();
  spdlog::info("train {}: {:.0f} tokens/s", variant, tokens_per_second);
  nlohmann::json result = {{"variant", variant},
                           {"tokens_per_second", tokens_per_second},
                           {"step_ms", 1e3 * config.batch_size * context / tokens_per_second},
                           {"peak_memory_bytes", peak_memory_bytes(device)}};
  if (!config.profile_dir.empty()) {
    // The same Trainer steps again, under the profiler.
    train::Trainer profiled(*model, *optimizer,
                            train::TrainerOptions(kProfiledSteps, kProfiledSteps)
                                .max_grad_norm(1.0)
                                .label(variant)
                                .unit("tokens")
                                .progress(train::ProgressStyle::None)
                                .loss_check_every(kProfiledSteps)
                                .device(device)
                                .cuda_graph(config.cuda_graph));
    const auto trace = (std::filesystem::path(config.profile_dir) / ("train_" + variant + ".trace.json")).string();
    const auto summary = train::profile_ops([&] { profiled.fit(hooks); }, device, trace);
    spdlog::info("train {}: {} steps profiled ({:.1f} ms, the GPU busy {:.1f} ms), trace {}", variant, kProfiledSteps,
                 summary.wall_ms, summary.device_busy_ms, trace);
    result["profile"] = profile_json(summary, kProfiledSteps);
  }
  return result;
}

int64_t weight_bytes(const torch::nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) bytes += p.numel() * p.element_size();
  for (const auto& b : model.buffers()) bytes += b.numel() * b.element_size();
  return bytes;
}

struct DecodeRate {
  double tokens_per_second = 0;  // over the batch
  int64_t graph_nodes = 0;       // kernels and copies per step in the captured graph (0 without one)
  nlohmann::json profile;        // of kProfiledTokens more steps, where asked for
};

double seconds_for(torch::Device device, const std::function<void()>& run) {
  train::synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  run();
  train::synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Greedy decoding of `batch` sequences from position 0 through nn::Decoder, as generate runs
// it (on CUDA the step replayed from a CUDA graph): `tokens` steps, each fed the previous
// argmax, after a warm-up (the eager step and the capture). With a trace path, kProfiledTokens
// more steps from position 0 under the profiler: how much of a token's time the GPU is busy,
// and with what.
DecodeRate decode_throughput(nn::TransformerLM& model, torch::Device device, torch::Dtype dtype, int64_t tokens,
                             int64_t batch, const std::string& trace_path = "") {
  torch::NoGradGuard no_grad;
  nn::Decoder decoder(*model, batch, dtype);
  auto next = torch::zeros({batch}, torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto run = [&](int64_t steps) {
    for (int64_t i = 0; i < steps; ++i) next = decoder.step(next).argmax(-1);
  };
  run(3);
  for (int64_t i = 0; i < batch; ++i) decoder.prefill(i, torch::empty({0}, torch::kLong));
  const double seconds = seconds_for(device, [&] { run(tokens); });
  DecodeRate rate{static_cast<double>(batch * tokens) / seconds, decoder.graph_nodes(), nullptr};
  if (!trace_path.empty()) {
    for (int64_t i = 0; i < batch; ++i) decoder.prefill(i, torch::empty({0}, torch::kLong));
    const auto summary = train::profile_ops([&] { run(kProfiledTokens); }, device, trace_path);
    rate.profile = profile_json(summary, kProfiledTokens);
    spdlog::info("decode: {} steps profiled ({:.1f} us a token, the GPU busy {:.1f} us of it), trace {}",
                 kProfiledTokens, 1e3 * summary.wall_ms / kProfiledTokens,
                 1e3 * summary.device_busy_ms / kProfiledTokens, trace_path);
  }
  return rate;
}

// A prompt of the whole context (random token ids) prefilled through nn::Decoder, as sample
// prefills its prompt: one forward of `context` rows through every projection. Tokens per
// second of the best of kPrefillRepeats timed passes, after one untimed.
double prefill_throughput(nn::TransformerLM& model, torch::Device device, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  nn::Decoder decoder(*model, 1, dtype);
  const int64_t context = model->options.context();
  const auto prompt = torch::randint(model->options.vocab_size(), {context}, torch::kLong);
  decoder.prefill(0, prompt);
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kPrefillRepeats; ++i)
    best = std::min(best, seconds_for(device, [&] { decoder.prefill(0, prompt); }));
  return static_cast<double>(context) / best;
}

// Where a decode profile's trace goes: `name` in the profile directory, or nowhere.
std::string decode_trace(const BenchConfig& config, const std::string& name) {
  return config.profile_dir.empty() ? ""
                                    : (std::filesystem::path(config.profile_dir) / (name + ".trace.json")).string();
}

nlohmann::json generation(const BenchConfig& config, torch::Device device) {
  // The baseline in BF16 on the GPU (FP32 on the CPU); the packed ternary model with its
  // embedding, norms and head in the same dtype.
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  const int64_t tokens = std::min(config.generate_tokens, config.model.context() - 4);
  torch::manual_seed(0);
  auto baseline = make_lm(config.model, std::nullopt);
  baseline->eval();
  baseline->to(device, dtype);
  const auto baseline_decode =
      decode_throughput(baseline, device, dtype, tokens, 1, decode_trace(config, "generate_baseline"));
  const double baseline_rate = baseline_decode.tokens_per_second;
  const auto baseline_batch_rate = decode_throughput(baseline, device, dtype, tokens, kBatchedSequences);
  const double baseline_prefill_rate = prefill_throughput(baseline, device, dtype);
  const int64_t baseline_bytes = weight_bytes(*baseline);
  baseline = nullptr;

  // The packed model as bittorch-lm export writes it and sample loads it: in its file's
  // bfloat16 on the GPU, widened to float32 on the CPU.
  const std::string file = fmt::format("/tmp/bittorch-lm-bench-{}.btp", ::getpid());
  {
    torch::manual_seed(0);
    auto trained = make_lm(config.model, bitnet_config(config.packed_activation_bits));
    trained->eval();
    nn::pack(*trained);
    io::save_packed(*trained, file, torch::kBFloat16);
  }
  const int64_t file_bytes = io::regular_file_size(file);
  nn::TransformerLM packed{nullptr};
  const double load_seconds = seconds_for(device, [&] { packed = io::load_packed_transformer(file, device); });
  std::remove(file.c_str());
  const auto packed_decode =
      decode_throughput(packed, device, dtype, tokens, 1, decode_trace(config, "generate_packed"));
  const double packed_rate = packed_decode.tokens_per_second;
  const auto packed_batch_rate = decode_throughput(packed, device, dtype, tokens, kBatchedSequences);
  const double packed_prefill_rate = prefill_throughput(packed, device, dtype);
  const int64_t packed_bytes = weight_bytes(*packed);
  // What bittorch-lm sample runs after loading: prefill, then sampling with its default
  // temperature and top-k, the text back on the host. Timed whole, and for its first three
  // tokens alone (the prefill's, the eager step's, the graph capture's: one-time work), so that
  // the rate of the tokens after them shows apart.
  const auto sample_seconds_for = [&](int64_t count) {
    const auto options = nn::GenerateOptions().max_new_tokens(count).temperature(0.8).top_k(40);
    return seconds_for(device, [&] { continue_text(*packed, "ROMEO:", options, nullptr); });
  };
  const int64_t setup_tokens = std::min<int64_t>(3, tokens);
  // Once untimed first: the process's first sampling loads kernels and warms the allocator,
  // which the two timed calls would otherwise not share alike.
  sample_seconds_for(setup_tokens);
  const double setup_seconds = sample_seconds_for(setup_tokens);
  const double sample_seconds = sample_seconds_for(tokens);
  const double sample_rate = static_cast<double>(tokens) / sample_seconds;
  // 0 where the difference of the two timings says nothing (the run too short for the noise).
  const double sample_rate_after_setup =
      tokens > setup_tokens && sample_seconds > setup_seconds
          ? static_cast<double>(tokens - setup_tokens) / (sample_seconds - setup_seconds)
          : 0.0;
  spdlog::info(
      "generate: baseline {:.0f} tokens/s, packed {:.0f} tokens/s ({:.2f}x), sample end to end {:.0f} tokens/s "
      "({:.1f} ms to the first {} tokens, {:.0f} tokens/s after them); "
      "batch {}: baseline {:.0f}, packed {:.0f} tokens/s; prefill of {} tokens: baseline {:.0f}, packed {:.0f} "
      "tokens/s; weights {} -> {} bytes ({:.1f}x), file {} bytes, loaded in {:.3f} s",
      baseline_rate, packed_rate, packed_rate / baseline_rate, sample_rate, 1e3 * setup_seconds, setup_tokens,
      sample_rate_after_setup, kBatchedSequences, baseline_batch_rate.tokens_per_second,
      packed_batch_rate.tokens_per_second, config.model.context(), baseline_prefill_rate, packed_prefill_rate,
      baseline_bytes, packed_bytes, static_cast<double>(baseline_bytes) / packed_bytes, file_bytes, load_seconds);
  nlohmann::json result = {{"tokens", tokens},
                           {"dtype", device.is_cuda() ? "bfloat16" : "float32"},
                           {"packed_activation_bits", config.packed_activation_bits},
                           {"cuda_graphs", device.is_cuda()},
                           {"threads", at::get_num_threads()},
                           {"baseline_tokens_per_second", baseline_rate},
                           {"packed_tokens_per_second", packed_rate},
                           {"speedup", packed_rate / baseline_rate},
                           {"sample_tokens_per_second", sample_rate},
                           {"sample_setup_tokens", setup_tokens},
                           {"sample_setup_seconds", setup_seconds},
                           {"sample_tokens_per_second_after_setup", sample_rate_after_setup},
                           {"batch", kBatchedSequences},
                           {"baseline_batch_tokens_per_second", baseline_batch_rate.tokens_per_second},
                           {"packed_batch_tokens_per_second", packed_batch_rate.tokens_per_second},
                           {"prefill_tokens", config.model.context()},
                           {"baseline_prefill_tokens_per_second", baseline_prefill_rate},
                           {"packed_prefill_tokens_per_second", packed_prefill_rate},
                           {"baseline_graph_nodes_per_token", baseline_decode.graph_nodes},
                           {"packed_graph_nodes_per_token", packed_decode.graph_nodes},
                           {"baseline_weight_bytes", baseline_bytes},
                           {"packed_weight_bytes", packed_bytes},
                           {"packed_file_bytes", file_bytes},
                           {"packed_load_seconds", load_seconds},
                           {"memory_ratio", static_cast<double>(baseline_bytes) / packed_bytes},
                           {"file_ratio", static_cast<double>(baseline_bytes) / file_bytes}};
  if (!config.profile_dir.empty()) {
    result["baseline_profile"] = baseline_decode.profile;
    result["packed_profile"] = packed_decode.profile;
  }
  return result;
}

}  // namespace

int bench_command(int argc, char** argv) {
  cxxopts::Options options("bittorch-lm bench", "Training and generation throughput of the fp and ternary models");
  // clang-format off
  options.add_options()
    ("batch-size", "Training sequences per step", text_flag("8"))
    ("train-steps", "Timed training steps (after as many to warm up)", text_flag("10"))
    ("generate-tokens", "Generated tokens timed (per sequence)", text_flag("256"))
    ("packed-activation-bits", "Activations of the packed model generation times: 0 (as the layer's input "
                               "dtype) or 8 (quantized per row)", text_flag("0"))
    ("parts", "train, generate or both (comma-separated)", text_flag("train,generate"))
    ("variants", "Training variants (comma-separated): baseline (full precision), ternary, ternary_a8 (8-bit "
                 "activations), ternary_a8_g8 (and FP8 gradients)", text_flag("baseline,ternary,ternary_a8"))
    ("json", "Write the results to PATH", text_flag(""))
    ("profile", "Profile " + std::to_string(kProfiledSteps) + " more training steps of each variant and " +
     std::to_string(kProfiledTokens) + " more decode steps (batch 1) of each model (LibTorch's Kineto profiler): "
     "Chrome traces in directory DIR, each op's host and GPU time in the results", text_flag(""))
    ("checkpoint-activations", "Train with each block recomputed in the backward (as train --checkpoint-activations)")
    ("no-cuda-graph", "Time eager training steps (as train --no-cuda-graph); by default on a GPU each step is "
                      "replayed from a CUDA graph, as train does (under --profile the steps are eager)");
  // clang-format on
  add_model_options(options);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    BenchConfig config;
    config.model = parse_model_options(args);
    config.batch_size = integer_flag(args, "batch-size", 1);
    config.train_steps = integer_flag(args, "train-steps", 1);
    config.generate_tokens = integer_flag(args, "generate-tokens", 1);
    config.packed_activation_bits = integer_flag(args, "packed-activation-bits", 0);
    if (config.packed_activation_bits != 0 && config.packed_activation_bits != 8) {
      throw UsageError("--packed-activation-bits: expected 0 or 8, got " +
                       std::to_string(config.packed_activation_bits));
    }
    config.parts = choices_flag(args, "parts", {"train", "generate"});
    config.variants = choices_flag(args, "variants", kTrainVariants);
    config.json_path = args["json"].as<std::string>();
    check_path_flags(args, {"json"});
    config.profile_dir = args["profile"].as<std::string>();
    config.checkpoint_activations = args.count("checkpoint-activations") > 0;
    // A profile is of eager steps (a replayed graph shows no ops), and so are the steps timed
    // beside it, so that its breakdown and the figure are of one path.
    config.cuda_graph = !args.count("no-cuda-graph") && config.profile_dir.empty();
    if (!config.profile_dir.empty()) {
      std::error_code error;
      std::filesystem::create_directories(config.profile_dir, error);
      if (error || !std::filesystem::is_directory(config.profile_dir)) {
        throw UsageError("--profile: '" + config.profile_dir + "' is not a directory that can be made (" +
                         (error ? error.message() : "a file of that name exists") + ")");
      }
    }
    const auto device = selected_device(args);
    config.cuda_graph = config.cuda_graph && device.is_cuda();
    if (wants(config, "train")) check_training_fits(config.model, config.batch_size, device);
    nlohmann::json result = {{"device", device.str()},
                             {"model", nlohmann::json::parse(nn::to_json(config.model))},
                             {"batch_size", config.batch_size},
                             {"train_precision", device.is_cuda() ? "bf16 autocast" : "fp32"},
                             {"activation_checkpointing", config.checkpoint_activations},
                             {"cuda_graph", config.cuda_graph}};
#ifdef BITTORCH_LM_CUDA
    if (device.is_cuda()) result["gpu"] = at::cuda::getCurrentDeviceProperties()->name;
#endif
    if (wants(config, "train")) {
      result["train"] = nlohmann::json::array();
      for (const auto& variant : config.variants) result["train"].push_back(train_throughput(config, variant, device));
    }
    if (wants(config, "generate")) result["generate"] = generation(config, device);
    std::cout << result.dump(2) << std::endl;
    if (!config.json_path.empty()) io::write_file_atomically(config.json_path, result.dump(2) + "\n");
    return 0;
  });
}

}  // namespace bittorch::apps
