#pragma once

// The 8-bit product of the CUDA forward, shared by ternary_linear's and
// packed_ternary_linear's CUDA backends.

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <optional>

namespace bittorch::ops::cuda {

/// y = (values @ codes^T) * input_scale * weight_scale + bias in `dtype`, for 8-bit values
/// [*, K] with row scales [*, 1] and 8-bit ternary codes [N, K] of the same format (int8 or
/// float8_e4m3fn): cuBLASLt FP8 or INT8 where the shape allows, else an exact bfloat16
/// product with float32 sums.
at::Tensor eight_bit_product(const at::Tensor& values, const at::Tensor& input_scale, const at::Tensor& codes,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             quant::ActivationFormat format, at::ScalarType dtype);

}  // namespace bittorch::ops::cuda
