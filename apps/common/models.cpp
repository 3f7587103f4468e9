#include "common/models.h"

#include "common/cli.h"

#include <torch/torch.h>

#include <filesystem>
#include <sstream>

namespace bittorch::apps {

torch::nn::Sequential make_mlp(const std::vector<int64_t>& sizes,
                               const std::optional<TernaryRecipe>& ternary) {
  torch::nn::Sequential model;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    if (ternary) {
      model->push_back(nn::TernaryLinear(nn::TernaryLinearOptions(sizes[i], sizes[i + 1])
                                             .scale_mode(ternary->scale_mode)
                                             .threshold_factor(ternary->threshold_factor)
                                             .activation_bits(ternary->activation_bits)));
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

void save_checkpoint(const torch::nn::Sequential& model, const std::string& kind,
                     const std::string& path) {
  torch::serialize::OutputArchive archive;
  model->save(archive);
  archive.write("bittorch_model_kind", c10::IValue(kind));
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(path, bytes.str());
}

void load_checkpoint(torch::nn::Sequential& model, const std::string& kind, const std::string& path) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), "checkpoint ", path, " does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "checkpoint ", path, " is corrupted or not a BitTorch checkpoint (",
                error.what_without_backtrace(), ")");
  }
  c10::IValue stored_kind;
  TORCH_CHECK(archive.try_read("bittorch_model_kind", stored_kind) && stored_kind.isString(),
              "checkpoint ", path, " is not a BitTorch app checkpoint (no model kind recorded)");
  TORCH_CHECK(stored_kind.toStringRef() == kind, "checkpoint ", path, " holds a '",
              stored_kind.toStringRef(), "' model, but a '", kind, "' model was asked for");
  try {
    model->load(archive);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "checkpoint ", path, " does not match the model (",
                error.what_without_backtrace(), ")");
  }
}

}  // namespace bittorch::apps
