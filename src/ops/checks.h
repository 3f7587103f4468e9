#pragma once

// Argument checks shared by every backend of the bittorch:: ops, so that CPU, CUDA and
// Meta reject the same inputs with the same messages.

#include <bittorch/quant/activations.h>
#include <bittorch/quant/ternarize.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

namespace bittorch::ops {

/// A 2-D, non-empty, floating-point weight and valid quantization settings; returns the
/// parsed scale mode.
quant::ScaleMode check_ternarize_args(const char* op, const at::Tensor& weight,
                                      double threshold_factor, c10::string_view scale_mode);

/// An input [*, features] of float32, float16 or bfloat16 and an 8-bit activation format
/// ("int8" or "float8_e4m3"); returns the parsed format.
quant::ActivationFormat check_activation_args(const char* op, const at::Tensor& input,
                                              c10::string_view format);

/// The parsed settings of a checked ternary_linear call.
struct LinearArgs {
  quant::ScaleMode scale_mode;
  quant::ActivationFormat activation_format;
};

/// check_ternarize_args plus input [*, in_features] and bias [out_features], all of one
/// dtype and on one device, and an activation format ("none" or one check_activation_args
/// accepts).
LinearArgs check_linear_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, double threshold_factor,
                             c10::string_view scale_mode, c10::string_view activation_format);

/// A packed_ternary_linear call: input [*, in_features] of float32/float16/bfloat16, packed
/// int32 [out, ceil(in_features / 16)], scale float32 [out] or [1], bias [out] in the input's
/// dtype, all on one device; returns the parsed activation format.
quant::ActivationFormat check_packed_linear_args(const char* op, const at::Tensor& input,
                                                 const at::Tensor& packed, const at::Tensor& scale,
                                                 const std::optional<at::Tensor>& bias,
                                                 int64_t in_features,
                                                 c10::string_view activation_format);

/// While alive on this thread, check_linear_args also accepts a float32 (master) weight with
/// a float16/bfloat16 input: the CUDA autocast implementation quantizes the FP32 master
/// weight straight into the autocast dtype instead of casting it first.
class AutocastMasterWeightScope {
 public:
  AutocastMasterWeightScope();
  ~AutocastMasterWeightScope();
  AutocastMasterWeightScope(const AutocastMasterWeightScope&) = delete;
  AutocastMasterWeightScope& operator=(const AutocastMasterWeightScope&) = delete;

 private:
  bool previous_;
};

/// A c10::Error from `op` naming `name` when `tensor` holds NaN or +-Inf: how many, and the
/// first one's index and value. Reads the tensor (a device synchronisation on a GPU): for
/// quantization that is not on the training path.
void check_finite(const char* op, const char* name, const at::Tensor& tensor);

/// The dtype scales are kept in: float32 for float16/bfloat16 weights, else the weight's.
at::ScalarType scale_dtype(at::ScalarType weight_dtype);

/// The output shape of a linear layer: input's shape with the last dimension replaced.
std::vector<int64_t> linear_output_shape(const at::Tensor& input, int64_t out_features);

}  // namespace bittorch::ops
