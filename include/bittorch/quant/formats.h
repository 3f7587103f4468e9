#pragma once

// The number formats of ternary weights and 8-bit activations, and their spellings in the
// dispatcher ops' string arguments.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

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

/// The number format activations are quantized to before the ternary product (W1.58A8).
/// Each row (token) of the input gets its own float32 scale: absmax / max_code, where
/// max_code is 127 (Int8) or 448 (Float8E4M3).
enum class ActivationFormat {
  /// Activations stay in their dtype (W1.58A16 in float16/bfloat16 training).
  None,
  /// round(x / scale) to integers in [-127, 127] (round half to even), as BitNet b1.58.
  Int8,
  /// x / scale rounded to FP8 e4m3 (finite, max 448), the format Hopper and Ada tensor cores
  /// multiply fastest.
  Float8E4M3,
};

/// "none", "int8" or "float8_e4m3", the spelling the dispatcher ops take.
BITTORCH_API std::string to_string(ActivationFormat format);
/// Parses the spellings above; anything else is a c10::Error naming the accepted values.
BITTORCH_API ActivationFormat activation_format_from_string(std::string_view name);

/// The number format of the output gradient in the backward's grad_input product.
enum class GradientFormat {
  /// The gradient stays in its dtype.
  None,
  /// g * weight_scale (folded in per output feature) rounded to FP8 e5m2 with one float32
  /// scale for the whole tensor, absmax / 57344 (e5m2's largest finite value), then
  /// multiplied by the ternary codes (exact in e4m3): the FP8 training recipes' backward.
  Float8E5M2,
};

/// "none" or "float8_e5m2", the spelling the dispatcher ops take.
BITTORCH_API std::string to_string(GradientFormat format);
/// Parses the spellings above; anything else is a c10::Error naming the accepted values.
BITTORCH_API GradientFormat gradient_format_from_string(std::string_view name);

/// A weight matrix split into ternary codes and their scale: weight ~= codes * scale[:, None].
struct TernarizedWeight {
  /// Values in {-1, 0, 1}, same shape and dtype as the weight.
  at::Tensor codes;
  /// Shape [out_features] per channel, [1] when global. float32 for float16/bfloat16
  /// weights (so that the 1e-8 floor is representable), else the weight's dtype.
  at::Tensor scale;
};

/// An input split into 8-bit codes and their per-row scales: input ~= values * scale.
struct QuantizedActivations {
  /// Same shape as the input; int8 or float8_e4m3fn.
  at::Tensor values;
  /// float32, the input's shape with the last dimension 1.
  at::Tensor scale;
};

}  // namespace bittorch::quant
