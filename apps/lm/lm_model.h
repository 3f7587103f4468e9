#pragma once

// The models bittorch-lm trains: one TransformerLM definition, full precision ("fp") or with
// ternary projections ("ternary": by default BitNet b1.58's absmean scales).

#include <bittorch/bittorch.h>
#include <bittorch/train/fused_adamw.h>
#include <bittorch/train/sharded_adamw.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

namespace bittorch::apps {

/// --preset and the size flags that override it (--layers, --width, --heads, --context,
/// --mlp-ratio, --mlp).
void add_model_options(cxxopts::Options& options);
/// The model they describe; bad values are UsageErrors naming the flag.
nn::TransformerOptions parse_model_options(const cxxopts::ParseResult& args);

/// --dtype, the storage of a written model's embedding, norms and head (bfloat16, float16 or
/// float32; bfloat16 by default), for the commands that write model files; and its value.
void add_storage_dtype_option(cxxopts::Options& options);
torch::Dtype storage_dtype(const cxxopts::ParseResult& args);

/// The most bytes train --sample and sample --tokens generate in one run (1 MiB).
constexpr int64_t kMaxGeneratedBytes = int64_t{1} << 20;

/// The model: full precision (`ternary` nullopt) or with ternary projections quantized so,
/// initialised from the current seed.
nn::TransformerLM make_lm(const nn::TransformerOptions& options, const std::optional<quant::QuantConfig>& ternary);

/// BitNet b1.58's quantization (the defaults of train --model ternary): absmean scales per
/// output channel, activations of `activation_bits`.
quant::QuantConfig bitnet_config(int64_t activation_bits = 0);

/// The ternary projections' quantization as checkpoint settings record it (null for "fp").
nlohmann::json quant_json(const std::optional<quant::QuantConfig>& ternary);

/// What training a model of `options` on batches of `batch` sequences takes at the least, in
/// bytes: the parameters with AdamW's state (16 bytes each: float32 weights, gradients and two
/// moments) and one step's activations (float32 logits and their gradient, and the blocks'
/// saved inputs, in float32). An estimate that errs low, computed without overflow.
struct TrainingMemory {
  double parameters = 0, activations = 0;
  double total() const { return parameters + activations; }
};
TrainingMemory training_memory(const nn::TransformerOptions& options, int64_t batch);

/// The memory of `device`: the GPU's, or the machine's for the CPU.
double device_memory_bytes(torch::Device device);

/// A UsageError naming the flags to change when training_memory(options, batch) exceeds the
/// memory of `device`: sizes that cannot fit are refused before anything of their size is
/// allocated.
void check_training_fits(const nn::TransformerOptions& options, int64_t batch, torch::Device device);

/// The most memory the caching allocator of a CUDA `device` has held in tensors since the last
/// reset_peak_memory (0 on the CPU).
double peak_memory_bytes(torch::Device device);
void reset_peak_memory(torch::Device device);

/// The parameter count of `model`.
int64_t parameter_count(const torch::nn::Module& model);

/// AdamW (train::FusedAdamW, betas 0.9, 0.95) over the model's matrices, with `weight_decay`
/// (parameter group 0), and its other parameters (norm gains), without; with `shard_over`, its
/// state split over that group's ranks (train::ShardedAdamW, ZeRO stage 1).
std::unique_ptr<train::FusedAdamW> make_optimizer(torch::nn::Module& model, double lr, double weight_decay,
                                                  c10::intrusive_ptr<c10d::ProcessGroup> shard_over = {});

/// The mean cross-entropy of predicting `targets` (the next bytes) from `inputs`, [batch, T]
/// each, in BF16 autocast when `bf16`.
torch::Tensor next_byte_loss(nn::TransformerLM& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                             bool bf16);

/// `prompt` followed by the text the model generates after it, `count` times over, generated
/// together (the model as it is: call eval() first); bytes, or the tokenizer's tokens.
std::vector<std::string> continue_text(nn::TransformerLMImpl& model, const std::string& prompt,
                                       const nn::GenerateOptions& options, const io::Tokenizer* tokenizer = nullptr,
                                       int64_t count = 1);

}  // namespace bittorch::apps
