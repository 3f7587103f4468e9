#pragma once

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <string>
#include <string_view>

namespace bittorch::quant {

/// How the per-channel (or global) scale of a ternary weight is computed.
enum class ScaleMode {
  /// scale = max|w|; w_tern = sign(w) where |w| > threshold_factor * scale, else 0
  /// (the original BitTorch rule).
  Max,
  /// scale = mean|w|; w_tern = clamp(round(w / scale), -1, 1) (BitNet b1.58).
  AbsMean,
};

/// "max" or "absmean", the spelling the dispatcher ops take.
BITTORCH_API std::string to_string(ScaleMode mode);
/// Parses "max" or "absmean"; anything else is a c10::Error naming the accepted values.
BITTORCH_API ScaleMode scale_mode_from_string(std::string_view name);

struct TernarizeOptions {
  /// Fraction of the scale below which a weight becomes 0 (ScaleMode::Max only), in [0, 1].
  TORCH_ARG(double, threshold_factor) = 0.05;
  /// One scale per output row (true) or one for the whole matrix (false).
  TORCH_ARG(bool, per_channel) = true;
  TORCH_ARG(ScaleMode, scale_mode) = ScaleMode::Max;
};

/// A weight matrix split into ternary codes and their scale: weight ~= codes * scale[:, None].
struct TernarizedWeight {
  /// Values in {-1, 0, 1}, same shape and dtype as the weight.
  at::Tensor codes;
  /// Shape [out_features] per channel, [1] when global. float32 for float16/bfloat16
  /// weights (so that the 1e-8 floor is representable), else the weight's dtype.
  at::Tensor scale;
};

/// Ternarizes a 2-D weight [out_features, in_features] (calls the bittorch::ternarize op).
/// Not differentiable: the returned tensors never require grad.
BITTORCH_API TernarizedWeight ternarize(const at::Tensor& weight, const TernarizeOptions& options = {});

}  // namespace bittorch::quant
