#pragma once

// bittorch::packed_ternary_linear: inference on 2-bit packed weights (schema in
// src/ops/packed_ternary_linear/packed_ternary_linear.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bittorch::ops {

/// y = (x @ codes^T) * scale + bias, codes unpacked from `packed` (int32 [out,
/// ceil(in_features / 16)], docs/packed-format.md), scale float32 [out] or [1], bias in the
/// input's dtype; activation_format "none" | "int8" | "float8_e4m3". `kernel` picks the
/// kernel variant by name ("auto": the dispatch heuristics; see packed_kernel_names), for
/// tests and benchmarks; a variant that cannot run the call is a c10::Error. `epilogue`
/// "squared_relu" returns max(y, 0)^2 instead of y, computed on the float32 value before it is
/// rounded to the output dtype (an MLP's up-projection and activation in one kernel). Not
/// differentiable.
BITTORCH_API at::Tensor packed_ternary_linear(const at::Tensor& input, const at::Tensor& packed,
                                              const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                              int64_t in_features, c10::string_view activation_format = "none",
                                              c10::string_view kernel = "auto", c10::string_view epilogue = "none");

/// The kernel names packed_ternary_linear accepts on `device`, "auto" first.
BITTORCH_API std::vector<std::string> packed_kernel_names(c10::DeviceType device);

}  // namespace bittorch::ops
