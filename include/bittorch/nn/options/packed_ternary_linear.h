#pragma once

#include <bittorch/export.h>

#include <torch/arg.h>

#include <cstdint>

namespace bittorch::nn {

/// Options for `PackedTernaryLinear`.
struct BITTORCH_API PackedTernaryLinearOptions {
  PackedTernaryLinearOptions(int64_t in_features, int64_t out_features);

  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  /// 0 or 8, as TernaryLinearOptions::activation_bits.
  TORCH_ARG(int64_t, activation_bits) = 0;
};

}  // namespace bittorch::nn
