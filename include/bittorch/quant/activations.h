#pragma once

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace bittorch::quant {

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

/// The format `activation_bits` (0 = off, or 8) means on `device`: FP8 e4m3 on CUDA devices of
/// compute capability 8.9 and later, INT8 on older GPUs and on the CPU; None for 0.
BITTORCH_API ActivationFormat activation_format_for(int64_t activation_bits, const c10::Device& device);

/// An input split into 8-bit codes and their per-row scales: input ~= values * scale.
struct QuantizedActivations {
  /// Same shape as the input; int8 or float8_e4m3fn.
  at::Tensor values;
  /// float32, the input's shape with the last dimension 1.
  at::Tensor scale;
};

/// Quantizes `input` [*, features] (float32, float16 or bfloat16) per row to `format`
/// (Int8 or Float8E4M3; calls the bittorch::quantize_activations op). Not differentiable.
BITTORCH_API QuantizedActivations quantize_activations(const at::Tensor& input, ActivationFormat format);

}  // namespace bittorch::quant
