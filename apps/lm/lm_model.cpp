#include "lm/lm_model.h"

#include "common/cli.h"

#include <bittorch/train/autocast.h>

#ifdef BITTORCH_LM_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <fmt/format.h>

#include <unistd.h>

namespace bittorch::apps {

void add_model_options(cxxopts::Options& options) {
  // clang-format off
  options.add_options("Model")
    ("preset", "Model size: tiny (2 layers, 64 wide, context 64), small (6, 384, 256; 10.7M parameters), "
               "medium (12, 768, 512), large (24, 1536, 1024), bitnet-2b4t (BitNet b1.58 2B4T's shape, 2.41B; "
               "its vocabulary of 128256 wants --tokenizer)", text_flag("tiny"))
    ("layers", "Blocks (overrides the preset)", cxxopts::value<std::string>())
    ("width", "Model width (overrides the preset)", cxxopts::value<std::string>())
    ("heads", "Attention heads (overrides the preset)", cxxopts::value<std::string>())
    ("context", "Context length in bytes (overrides the preset)", cxxopts::value<std::string>())
    ("mlp-ratio", "MLP hidden size over the width", text_flag("4"))
    ("mlp-hidden", "MLP hidden size (overrides --mlp-ratio)", cxxopts::value<std::string>())
    ("mlp", "squared_relu, swiglu or gated_squared_relu (BitNet b1.58 2B4T's)", text_flag("squared_relu"))
    ("kv-heads", "Key and value heads, a divisor of --heads (grouped-query attention; default: as many)",
     cxxopts::value<std::string>())
    ("sub-norms", "An RMSNorm before the attention's and the MLP's output projections (BitNet's subln)")
    ("tied-embeddings", "The head's weight is the embedding's");
  // clang-format on
}

nn::TransformerOptions parse_model_options(const cxxopts::ParseResult& args) {
  auto options =
      nn::transformer_preset(choice_flag(args, "preset", {"tiny", "small", "medium", "large", "bitnet-2b4t"}));
  if (args.count("layers")) options.layers(integer_flag(args, "layers", 1));
  if (args.count("width")) options.width(integer_flag(args, "width", 2));
  if (args.count("heads")) options.heads(integer_flag(args, "heads", 1));
  if (args.count("context")) options.context(integer_flag(args, "context", 1));
  options.mlp_ratio(integer_flag(args, "mlp-ratio", 1));
  options.mlp(nn::mlp_kind_from_string(choice_flag(args, "mlp", {"squared_relu", "swiglu", "gated_squared_relu"})));
  if (args.count("mlp-hidden")) options.mlp_hidden(integer_flag(args, "mlp-hidden", 1));
  if (args.count("kv-heads")) options.kv_heads(integer_flag(args, "kv-heads", 1));
  options.sub_norms(args.count("sub-norms") > 0).tied_embeddings(args.count("tied-embeddings") > 0);
  try {
    nn::check_transformer_options(options);
  } catch (const c10::Error& error) {
    throw UsageError(std::string("--width/--heads/--kv-heads: ") + error.what_without_backtrace());
  }
  return options;
}

void add_storage_dtype_option(cxxopts::Options& options) {
  options.add_options()("dtype", "Storage of the embedding, norms and head: bfloat16, float16 or float32",
                        text_flag("bfloat16"));
}

torch::Dtype storage_dtype(const cxxopts::ParseResult& args) {
  const auto name = choice_flag(args, "dtype", {"bfloat16", "float16", "float32"});
  return name == "bfloat16" ? torch::kBFloat16 : name == "float16" ? torch::kHalf : torch::kFloat;
}

nn::TransformerLM make_lm(const nn::TransformerOptions& options, const std::optional<quant::QuantConfig>& ternary) {
  nn::TransformerLM model(options);
  if (ternary) nn::convert_to_ternary(*model, *ternary, nn::is_transformer_projection);
  return model;
}

quant::QuantConfig bitnet_config(int64_t activation_bits) {
  return quant::QuantConfig().scale_mode(quant::ScaleMode::AbsMean).activation_bits(activation_bits);
}

nlohmann::json quant_json(const std::optional<quant::QuantConfig>& ternary) {
  return ternary ? nlohmann::json::parse(quant::to_json(*ternary)) : nlohmann::json(nullptr);
}

TrainingMemory training_memory(const nn::TransformerOptions& o, int64_t batch) {
  const double vocab = static_cast<double>(o.vocab_size()), width = static_cast<double>(o.width()),
               layers = static_cast<double>(o.layers()), hidden = static_cast<double>(nn::mlp_hidden_size(o)),
               tokens = static_cast<double>(batch) * static_cast<double>(o.context());
  const double mlp_matrices = o.mlp() == nn::MlpKind::SquaredReLU ? 2 : 3;
  const double kv_width = width * static_cast<double>(nn::key_value_heads(o)) / static_cast<double>(o.heads());
  const double parameters = (o.tied_embeddings() ? 1 : 2) * vocab * width +
                            layers * (2 * width * width + 2 * width * kv_width + mlp_matrices * width * hidden);
  return {16 * parameters, tokens * (8 * vocab + 16 * width * layers)};
}

double device_memory_bytes(torch::Device device) {
#ifdef BITTORCH_LM_CUDA
  if (device.is_cuda()) return static_cast<double>(at::cuda::getDeviceProperties(device.index())->totalGlobalMem);
#endif
  return static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

void check_training_fits(const nn::TransformerOptions& options, int64_t batch, torch::Device device) {
  const auto memory = training_memory(options, batch);
  const double available = device_memory_bytes(device);
  if (memory.total() <= available) return;
  const bool model_too_large = memory.parameters > memory.activations;
  throw UsageError(fmt::format(
      "{}: training this model takes at least {:.3g} GB ({:.3g} GB of parameters with AdamW's state, {:.3g} GB "
      "of one step's activations), more than the {:.3g} GB of {}",
      model_too_large ? "--preset/--layers/--width/--mlp-ratio" : "--batch-size/--context", memory.total() / 1e9,
      memory.parameters / 1e9, memory.activations / 1e9, available / 1e9, device.str()));
}

double peak_memory_bytes(torch::Device device) {
#ifdef BITTORCH_LM_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        device.has_index() ? device.index() : c10::cuda::current_device());
    return static_cast<double>(
        stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
  }
#endif
  return 0;
}

void reset_peak_memory(torch::Device device) {
#ifdef BITTORCH_LM_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : c10::cuda::current_device());
  }
#endif
}

int64_t parameter_count(const torch::nn::Module& model) {
  int64_t count = 0;
  for (const auto& p : model.parameters()) count += p.numel();
  return count;
}

std::unique_ptr<train::FusedAdamW> make_optimizer(torch::nn::Module& model, double lr, double weight_decay,
                                                  c10::intrusive_ptr<c10d::ProcessGroup> shard_over) {
  std::vector<torch::Tensor> matrices, others;
  for (const auto& p : model.parameters()) (p.dim() >= 2 ? matrices : others).push_back(p);
  const auto options = [&](double decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(matrices, options(weight_decay));
  groups.emplace_back(others, options(0.0));
  if (shard_over) return std::make_unique<train::ShardedAdamW>(groups, torch::optim::AdamWOptions(lr), shard_over);
  return std::make_unique<train::FusedAdamW>(groups, torch::optim::AdamWOptions(lr));
}

torch::Tensor next_byte_loss(nn::TransformerLM& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                             bool bf16) {
  train::AutocastScope autocast(inputs.device(), bf16);
  return model->loss(inputs, targets);
}

std::vector<std::string> continue_text(nn::TransformerLMImpl& model, const std::string& prompt,
                                       const nn::GenerateOptions& options, const io::Tokenizer* tokenizer,
                                       int64_t count) {
  TORCH_CHECK(!prompt.empty(), "the prompt must not be empty");
  TORCH_CHECK(count >= 1, "the number of continuations must be >= 1, not ", count);
  std::vector<int64_t> prompt_tokens;
  if (tokenizer != nullptr) {
    prompt_tokens = tokenizer->encode(prompt);
  } else {
    prompt_tokens.assign(prompt.begin(), prompt.end());
    for (auto& token : prompt_tokens) token &= 0xFF;  // bytes, whatever char's signedness
  }
  const auto generated = nn::generate(
      model, std::vector<torch::Tensor>(static_cast<size_t>(count), torch::tensor(prompt_tokens)), options);
  std::vector<std::string> texts;
  for (const auto& sequence : generated) {
    const auto* ids = sequence.data_ptr<int64_t>();
    if (tokenizer != nullptr) {
      texts.push_back(prompt + tokenizer->decode(std::vector<int64_t>(ids, ids + sequence.numel())));
      continue;
    }
    std::string text = prompt;
    for (int64_t i = 0; i < sequence.numel(); ++i) text.push_back(static_cast<char>(ids[i]));
    texts.push_back(std::move(text));
  }
  return texts;
}

}  // namespace bittorch::apps
