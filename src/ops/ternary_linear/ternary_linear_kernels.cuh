#pragma once

// The CUDA backward's FP8 operands (gradient_format "float8_e5m2"): fused kernels for what
// the reference (ops/reference) computes in several ATen passes.

#include <ATen/core/Tensor.h>

#include <tuple>

namespace bittorch::ops::cuda {

/// (values, tensor_scale) of quantize_gradient_reference for contiguous gradient rows
/// [rows, out_features] (float32, float16 or bfloat16; out_features a multiple of 8) and the
/// weight scale ([out_features] or [1]): the gradient times the weight scale, divided by
/// max|that| / 57344 and rounded to e5m2; tensor_scale [1] float32 stays on the device. Two
/// passes over the gradient (max, then write), the reference's float32 arithmetic.
std::tuple<at::Tensor, at::Tensor> quantize_gradient_rows(const at::Tensor& grad_rows, const at::Tensor& scale);

/// sign(operand)^T in float8_e4m3fn, [in_features, out_features] row-major, for a contiguous
/// operand [out_features, in_features] (code * scale): the ternary codes as the second
/// operand of grad_input = gradient @ codes, which FP8 products take K-major.
at::Tensor transposed_fp8_codes(const at::Tensor& operand);

}  // namespace bittorch::ops::cuda
