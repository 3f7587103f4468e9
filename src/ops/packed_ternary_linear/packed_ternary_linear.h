#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>

namespace bittorch::ops {

/// A packed_ternary_linear call: input [*, in_features] of float32/float16/bfloat16, packed
/// int32 [out, ceil(in_features / 16)], scale float32 [out] or [1], bias [out] in the input's
/// dtype, all on one device, and a kernel name packed_kernel_names lists for the input's
/// device; returns the parsed activation format.
quant::ActivationFormat check_packed_linear_args(const char* op, const at::Tensor& input, const at::Tensor& packed,
                                                 const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                                 int64_t in_features, c10::string_view activation_format,
                                                 c10::string_view kernel);

/// What packed_ternary_linear does to each output (a float32 value) before rounding it to the
/// output dtype: nothing, or max(y, 0)^2 (NaN stays NaN, as squared_relu keeps it).
enum class PackedEpilogue { None, SquaredReLU };

/// The epilogue named `epilogue` ("none", "squared_relu"); a c10::Error naming `op` otherwise.
PackedEpilogue parse_packed_epilogue(const char* op, c10::string_view epilogue);

/// y after the epilogue, on the host and on CUDA devices.
C10_HOST_DEVICE inline float apply_packed_epilogue(float y, bool squared_relu) {
  return squared_relu ? (y < 0.0F ? 0.0F : y * y) : y;
}

}  // namespace bittorch::ops
