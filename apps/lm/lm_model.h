#pragma once

// The models bittorch-lm trains: one TransformerLM definition, full precision ("fp") or with
// ternary projections ("ternary": BitNet b1.58's absmean scales, optional 8-bit activations).

#include <bittorch/bittorch.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace bittorch::apps {

/// --preset and the size flags that override it (--layers, --width, --heads, --context,
/// --mlp-ratio, --mlp).
void add_model_options(cxxopts::Options& options);
/// The model they describe; bad values are UsageErrors naming the flag.
nn::TransformerOptions parse_model_options(const cxxopts::ParseResult& args);

/// The options as JSON (checkpoints record them) and back.
nlohmann::json options_json(const nn::TransformerOptions& options);
nn::TransformerOptions options_from_json(const nlohmann::json& json);

/// The quantization of a ternary model: absmean scales, per output channel, activations of
/// `activation_bits` and grad_input gradients of `gradient_bits` (0 or 8 each).
quant::QuantConfig ternary_config(int64_t activation_bits, int64_t gradient_bits = 0);

/// The model of `kind` ("fp" or "ternary"), initialised from the current seed.
nn::TransformerLM make_lm(const nn::TransformerOptions& options, const std::string& kind, int64_t activation_bits,
                          int64_t gradient_bits = 0);

/// The parameter count of `model`.
int64_t parameter_count(const torch::nn::Module& model);

/// AdamW (betas 0.9, 0.95) over the model's matrices, with `weight_decay` (parameter group 0),
/// and its other parameters (norm gains), without.
std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& model, double lr, double weight_decay);

/// The mean cross-entropy of predicting `targets` (the next bytes) from `inputs`, [batch, T]
/// each, in BF16 autocast when `bf16`.
torch::Tensor next_byte_loss(nn::TransformerLM& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                             bool bf16);

/// `prompt` followed by the bytes the model generates after it (the model as it is: call
/// eval() first).
std::string continue_text(nn::TransformerLMImpl& model, const std::string& prompt, const nn::GenerateOptions& options);

/// Turns BF16 autocast on for `device` while it lives (CUDA only; a no-op elsewhere or when
/// `enabled` is false) and clears autocast's weight cache at the end.
class AutocastScope {
 public:
  AutocastScope(torch::Device device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_;
};

}  // namespace bittorch::apps
