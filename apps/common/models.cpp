#include "common/models.h"

#include "common/cli.h"

#include <fmt/format.h>

#include <torch/torch.h>
#include <algorithm>

namespace bittorch::apps {

void add_ternary_recipe_options(cxxopts::Options& options, const std::string& default_scale_mode,
                                double default_threshold_factor) {
  options.add_options()("scale-mode", "Ternary scale mode: max or absmean",
                        cxxopts::value<std::string>()->default_value(default_scale_mode))(
      "threshold-factor", "Ternary threshold factor (max scale mode), in [0, 1]",
      cxxopts::value<std::string>()->default_value(fmt::format("{}", default_threshold_factor)))(
      "activation-bits", "Ternary layers' activations: 0 (unquantized) or 8 (FP8 on CUDA sm_89+, else INT8)",
      cxxopts::value<std::string>()->default_value("0"))(
      "gradient-bits", "Ternary layers' grad_input product: 0 (gradients unquantized) or 8 (FP8 e5m2 gradients)",
      cxxopts::value<std::string>()->default_value("0"))(
      "per-tensor", "One ternary scale per layer instead of one per output row (as Hugging Face's BitNet layers)");
}

quant::QuantConfig parse_ternary_recipe(const cxxopts::ParseResult& args) {
  const auto config =
      quant::QuantConfig()
          .threshold_factor(number_flag(args, "threshold-factor"))
          .scale_mode(quant::scale_mode_from_string(choice_flag(args, "scale-mode", {"max", "absmean"})))
          .activation_bits(std::stoll(choice_flag(args, "activation-bits", {"0", "8"})))
          .gradient_bits(std::stoll(choice_flag(args, "gradient-bits", {"0", "8"})))
          .per_channel(args.count("per-tensor") == 0);
  if (const auto problem = quant::find_problem(config)) {
    std::string flag = problem->field;
    std::replace(flag.begin(), flag.end(), '_', '-');
    throw UsageError("--" + flag + ": " + problem->message);
  }
  return config;
}

torch::nn::Sequential make_mlp(const std::vector<int64_t>& sizes, const std::optional<quant::QuantConfig>& ternary) {
  torch::nn::Sequential model;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    if (ternary) {
      model->push_back(nn::TernaryLinear(nn::TernaryLinearOptions(sizes[i], sizes[i + 1]).quant(*ternary)));
    } else {
      model->push_back(torch::nn::Linear(sizes[i], sizes[i + 1]));
    }
    if (i + 2 < sizes.size()) model->push_back(torch::nn::ReLU());
  }
  return model;
}

std::vector<LayerWeights> describe_weights(const torch::nn::Sequential& model) {
  std::vector<LayerWeights> layers;
  for (const auto& child : model->named_children()) {
    LayerWeights layer{"layer " + child.key()};
    at::Tensor weight;
    if (const auto* ternary = child.value()->as<nn::TernaryLinear>()) {
      weight = ternary->weight;
      const auto codes = ternary->get_quantized_weight().codes;
      layer.zero_fraction = (codes == 0).to(torch::kDouble).mean().item<double>();
    } else if (const auto* linear = child.value()->as<torch::nn::Linear>()) {
      weight = linear->weight;
    } else {
      continue;
    }
    layer.fp32_bytes = weight.numel() * 4;
    // 2 bits per weight, rounded up to whole bytes, plus one FP32 scale per output row.
    layer.ternary_bytes = (weight.numel() * 2 + 7) / 8 + weight.size(0) * 4;
    layers.push_back(layer);
  }
  return layers;
}

}  // namespace bittorch::apps
