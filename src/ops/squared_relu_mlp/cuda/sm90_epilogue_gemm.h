#pragma once

// squared_relu_mlp's two products with the activation in the GEMM's epilogue, on Hopper
// (CUTLASS 3; sm90_gemm_*.cu), for bfloat16 operands: contiguous, 16-byte aligned, widths
// that are multiples of 8, on a compute capability 9.0 device (the caller checks). Built
// where CUTLASS's headers were found (BITTORCH_WITH_CUTLASS).

#include <ATen/core/Tensor.h>

namespace bittorch::ops::cuda {

/// output[M, N] = max(input @ weight^T, 0)^2, rounded once from the float32 accumulator:
/// input [M, K], weight [N, K].
void sm90_gemm_squared_relu(const at::Tensor& input, const at::Tensor& weight, at::Tensor& output);

/// output[M, N] = (grad @ weight_t^T) * 2 * sqrt(activation), rounded once: grad [M, K],
/// weight_t [N, K] (the next layer's weight transposed: K-major as the forward's is),
/// activation [M, N] (a squared ReLU's output, whose square root is max(x, 0)).
void sm90_gemm_times_squared_relu_grad(const at::Tensor& grad, const at::Tensor& weight_t, const at::Tensor& activation,
                                       at::Tensor& output);

}  // namespace bittorch::ops::cuda
