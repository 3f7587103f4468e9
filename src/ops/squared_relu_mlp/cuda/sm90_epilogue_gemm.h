#pragma once

// squared_relu_mlp's up projection with the activation in the GEMM's epilogue, on Hopper
// (CUTLASS 3; sm90_gemm_squared_relu.cu), for bfloat16 operands: contiguous, 16-byte aligned, widths
// that are multiples of 8, on a compute capability 9.0 device (the caller checks). Built
// where CUTLASS's headers were found (BITTORCH_WITH_CUTLASS).

#include <ATen/core/Tensor.h>

namespace bittorch::ops::cuda {

/// output[M, N] = max(input @ weight^T, 0)^2, rounded once from the float32 accumulator:
/// input [M, K], weight [N, K].
void sm90_gemm_squared_relu(const at::Tensor& input, const at::Tensor& weight, at::Tensor& output);

}  // namespace bittorch::ops::cuda
