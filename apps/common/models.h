#pragma once

#include <bittorch/bittorch.h>
#include <torch/nn/modules/container/sequential.h>

#include <optional>
#include <string>
#include <vector>

namespace bittorch::apps {

/// How the ternary layers of a model quantize their weights.
struct TernaryRecipe {
  quant::ScaleMode scale_mode = quant::ScaleMode::Max;
  double threshold_factor = 0.05;
  /// 0, or 8 for 8-bit activations (see TernaryLinearOptions::activation_bits).
  int64_t activation_bits = 0;
};

/// An MLP with `sizes` = {in, hidden..., out} and ReLU between its layers: all layers
/// TernaryLinear when `ternary` is given, else torch::nn::Linear.
torch::nn::Sequential make_mlp(const std::vector<int64_t>& sizes,
                               const std::optional<TernaryRecipe>& ternary);

/// Weight memory of one linear layer, FP32 against 2 bits per weight plus FP32 scales.
struct LayerWeights {
  std::string name;
  int64_t fp32_bytes = 0;
  int64_t ternary_bytes = 0;
  /// Fraction of ternary codes that are 0; absent for a full-precision layer.
  std::optional<double> zero_fraction;
};

std::vector<LayerWeights> describe_weights(const torch::nn::Sequential& model);

/// Saves the model's parameters with `kind` (which model it is) through a temporary file
/// and a rename, so that an interrupted run never leaves a half-written checkpoint.
void save_checkpoint(const torch::nn::Sequential& model, const std::string& kind,
                     const std::string& path);

/// Loads a checkpoint written by save_checkpoint into `model`; a corrupted file, another
/// kind of model or other shapes are c10::Errors saying so.
void load_checkpoint(torch::nn::Sequential& model, const std::string& kind, const std::string& path);

}  // namespace bittorch::apps
