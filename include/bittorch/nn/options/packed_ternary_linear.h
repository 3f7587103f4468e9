#pragma once

#include <bittorch/export.h>
#include <bittorch/quant/config.h>

#include <torch/arg.h>

#include <cstdint>

namespace bittorch::nn {

/// Options for `PackedTernaryLinear`.
struct BITTORCH_API PackedTernaryLinearOptions {
  PackedTernaryLinearOptions(int64_t in_features, int64_t out_features);

  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  /// The quantization the codes were made with. The forward uses activation_bits (8-bit
  /// activations or not); the other fields record how the weights were ternarized.
  TORCH_ARG(quant::QuantConfig, quant) = {};
};

}  // namespace bittorch::nn
