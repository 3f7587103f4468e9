#pragma once

// The projections of a TransformerLM as exporters write them: full-precision weights, or
// ternary codes with their scales, whichever module holds them (Linear, TernaryLinear,
// PackedTernaryLinear).

#include <bittorch/nn/modules/transformer.h>
#include <bittorch/quant/config.h>

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

namespace bittorch::io::detail {

struct ProjectionWeights {
  std::string path;  ///< the module's, "blocks.0.attention.q"
  /// Full precision: the weight [out, in] as it is; ternary: int8 codes [out, in] on the CPU.
  at::Tensor weight;
  /// Ternary: float32 [out] on the CPU, each row's scale (weight = codes * scale); else undefined.
  at::Tensor scale;
  /// Ternary: the layer's quantization.
  std::optional<quant::QuantConfig> quant;

  bool ternary() const { return quant.has_value(); }
};

/// Every projection of `model` (the head excluded), in module order.
std::vector<ProjectionWeights> projection_weights(nn::TransformerLMImpl& model);

}  // namespace bittorch::io::detail
