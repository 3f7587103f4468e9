#include "io/projection_weights.h"

#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

namespace bittorch::io::detail {

std::vector<ProjectionWeights> projection_weights(nn::TransformerLMImpl& model) {
  std::vector<ProjectionWeights> projections;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const auto& path = item.key();
    if (path == "head") continue;
    if (const auto* linear = item.value()->as<torch::nn::LinearImpl>()) {
      projections.push_back({path, linear->weight.detach(), {}, std::nullopt});
    } else if (const auto* layer = item.value()->as<nn::TernaryLinearImpl>()) {
      const auto quantized = layer->get_quantized_weight();
      const auto codes = quantized.codes.detach().to(at::kCPU, at::kChar);
      const auto scale = quantized.scale.detach().to(at::kCPU, at::kFloat).flatten();
      projections.push_back({path, codes, scale.numel() == 1 ? scale.expand({codes.size(0)}).contiguous() : scale,
                             layer->options.quant()});
    } else if (const auto* packed = item.value()->as<nn::PackedTernaryLinearImpl>()) {
      projections.push_back({path, quant::unpack_ternary(packed->packed.cpu(), packed->options.in_features()),
                             packed->scale.detach().to(at::kCPU, at::kFloat), packed->options.quant()});
    }
  }
  return projections;
}

}  // namespace bittorch::io::detail
