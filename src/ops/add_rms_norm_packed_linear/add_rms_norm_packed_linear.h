#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace bittorch::ops {

/// Checks bittorch::add_rms_norm_packed_linear's arguments (those of add_rms_norm and of
/// packed_ternary_linear, and input and residual of one shape and dtype), naming `op`.
void check_add_rms_norm_packed_linear_args(const char* op, const at::Tensor& input, const at::Tensor& residual,
                                           const at::Tensor& norm_weight, double eps, const at::Tensor& packed,
                                           const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                           int64_t in_features, c10::string_view activation_format,
                                           c10::string_view epilogue);

/// The op as add_rms_norm, then packed_ternary_linear on its output: every device's reference,
/// and CUDA's path where its one kernel does not apply.
std::tuple<at::Tensor, at::Tensor> add_rms_norm_packed_linear_composite(
    const at::Tensor& input, const at::Tensor& residual, const at::Tensor& norm_weight, double eps,
    const at::Tensor& packed, const at::Tensor& scale, const std::optional<at::Tensor>& bias, int64_t in_features,
    c10::string_view activation_format, c10::string_view epilogue);

}  // namespace bittorch::ops
