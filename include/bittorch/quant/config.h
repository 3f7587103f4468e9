#pragma once

// How a ternary layer quantizes: the one declaration of these settings. Module options,
// functional options, the packed layer and the apps' flags all hold a QuantConfig.

#include <bittorch/export.h>
#include <bittorch/quant/formats.h>

#include <torch/arg.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::quant {

///   bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean).activation_bits(8)
struct BITTORCH_API QuantConfig {
  TORCH_ARG(ScaleMode, scale_mode) = ScaleMode::Max;
  /// Fraction of the scale below which a weight becomes 0 (ScaleMode::Max only), in [0, 1].
  TORCH_ARG(double, threshold_factor) = 0.05;
  /// One scale per output row (true) or one for the whole matrix (false).
  TORCH_ARG(bool, per_channel) = true;
  /// 8: quantize the input per row to 8 bits before the product (W1.58A8; FP8 e4m3 on CUDA
  /// GPUs of compute capability 8.9 and later, INT8 elsewhere), straight-through in the
  /// backward. 0 (default): the input stays in its dtype.
  TORCH_ARG(int64_t, activation_bits) = 0;
  /// 8: the backward's grad_input product takes the output gradient in FP8 e5m2 (one scale
  /// per tensor, the weight scale folded in) times the ternary codes: on FP8 tensor cores
  /// (compute capability 8.9 and later) through cuBLASLt, elsewhere the same values in float32.
  /// The weight's gradient stays unquantized. 0 (default): the gradient stays in its dtype.
  TORCH_ARG(int64_t, gradient_bits) = 0;
};

BITTORCH_API bool operator==(const QuantConfig& a, const QuantConfig& b);

/// An invalid field of a QuantConfig: its name as declared above and what is wrong with it.
struct QuantConfigProblem {
  std::string field;
  std::string message;
};

/// The first invalid field of `config`, or nullopt: threshold_factor outside [0, 1] (or NaN),
/// activation_bits or gradient_bits other than 0 and 8, a scale_mode outside the enum.
BITTORCH_API std::optional<QuantConfigProblem> find_problem(const QuantConfig& config);

/// A c10::Error "`who`: <message>" for the first invalid field of `config`.
BITTORCH_API void check_quant_config(const QuantConfig& config, const char* who);

/// How packed model files record a QuantConfig (docs/packed-format.md): the integers
/// activation_bits, per_channel (0 or 1) and scale_mode (0 max, 1 absmean), then the real
/// threshold_factor. gradient_bits, a training setting, is not recorded.
inline constexpr size_t kQuantConfigInts = 3;
inline constexpr size_t kQuantConfigReals = 1;
/// Appends `config`'s numbers to `ints` and `reals`.
BITTORCH_API void append_numbers(const QuantConfig& config, std::vector<int64_t>& ints, std::vector<double>& reals);
/// The QuantConfig whose numbers start at ints[first_int] and reals[first_real]. Numbers that
/// describe none (too few, a flag other than 0 or 1, an unknown scale mode, an invalid field)
/// are a c10::Error naming the field.
BITTORCH_API QuantConfig quant_config_from_numbers(const std::vector<int64_t>& ints, size_t first_int,
                                                   const std::vector<double>& reals, size_t first_real);

/// `config` as a JSON object ({"scale_mode": "max", "threshold_factor": 0.05, "per_channel":
/// true, "activation_bits": 0, "gradient_bits": 0}): what checkpoints record.
BITTORCH_API std::string to_json(const QuantConfig& config);
/// And back, checked (check_quant_config); a missing or mistyped field is a c10::Error naming
/// it.
BITTORCH_API QuantConfig quant_config_from_json(std::string_view json);

/// "scale_mode=max, threshold_factor=0.05, per_channel=true, activation_bits=0" (and
/// ", gradient_bits=8" when set).
BITTORCH_API std::ostream& operator<<(std::ostream& stream, const QuantConfig& config);

}  // namespace bittorch::quant
