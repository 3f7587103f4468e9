#pragma once

#include <bittorch/bittorch.h>
#include <torch/nn/modules/container/sequential.h>
#include <cxxopts.hpp>

#include <optional>
#include <string>
#include <vector>

namespace bittorch::apps {

/// Adds --scale-mode, --threshold-factor (with the app's own defaults) and --activation-bits:
/// the fields of quant::QuantConfig a trainer sets.
void add_ternary_recipe_options(cxxopts::Options& options, const std::string& default_scale_mode,
                                double default_threshold_factor);
/// Reads them back; a bad value is a UsageError naming the flag (quant::find_problem).
quant::QuantConfig parse_ternary_recipe(const cxxopts::ParseResult& args);

/// An MLP with `sizes` = {in, hidden..., out} and ReLU between its layers: all layers
/// TernaryLinear when `ternary` is given, else torch::nn::Linear.
torch::nn::Sequential make_mlp(const std::vector<int64_t>& sizes, const std::optional<quant::QuantConfig>& ternary);

/// Weight memory of one linear layer, FP32 against 2 bits per weight plus FP32 scales.
struct LayerWeights {
  std::string name;
  int64_t fp32_bytes = 0;
  int64_t ternary_bytes = 0;
  /// Fraction of ternary codes that are 0; absent for a full-precision layer.
  std::optional<double> zero_fraction;
};

std::vector<LayerWeights> describe_weights(const torch::nn::Sequential& model);

}  // namespace bittorch::apps
