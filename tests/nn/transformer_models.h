#pragma once

// Small TransformerLMs with random weights, for the model, generation and CUDA tests.

#include <bittorch/bittorch.h>
#include <torch/torch.h>

#include <map>
#include <string>

namespace bittorch::testing {

inline nn::TransformerOptions toy_options(nn::MlpKind mlp = nn::MlpKind::SquaredReLU) {
  return nn::TransformerOptions().vocab_size(11).layers(2).width(12).heads(3).context(16).mlp_ratio(2).mlp(mlp);
}

/// Weights drawn larger than the initialisation's, so that every term matters.
inline nn::TransformerLM random_model(const nn::TransformerOptions& options, torch::Dtype dtype, uint64_t seed) {
  torch::manual_seed(seed);
  nn::TransformerLM model(options);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    p.copy_(p.dim() == 1 ? 1 + 0.2 * torch::randn_like(p) : 0.3 * torch::randn_like(p));
  }
  model->to(dtype);
  return model;
}

/// Each parameter's gradient (a copy), by name: after a backward, to compare two paths.
inline std::map<std::string, torch::Tensor> gradients_by_name(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> grads;
  for (const auto& p : model.named_parameters()) grads[p.key()] = p.value().grad().clone();
  return grads;
}

}  // namespace bittorch::testing
