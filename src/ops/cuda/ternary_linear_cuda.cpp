// CUDA implementation of the bittorch:: ops. Quantization is our own fused kernel
// (ternarize_kernels.cu); the matrix products are cuBLAS through ATen, on the current
// stream, with the ternary operand codes * scale in the activations' dtype: exact in
// float32, and in float16/bfloat16 each row's nonzeros are +-scale rounded once, the same
// operand the CPU reference builds.

#include "ops/checks.h"
#include "ops/cpu/ternary_linear_cpu.h"
#include "ops/cuda/ternarize_kernels.cuh"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_cuda(const at::Tensor& weight, double threshold_factor,
                                                  bool per_channel, c10::string_view scale_mode) {
  const auto mode = check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  return ternarize(weight, threshold_factor, per_channel, mode, weight.scalar_type(),
                   /*dequantize=*/false);
}

// Returns (output, operand, scale): the backward reuses the operand, so the weight is
// quantized once per step and never copied to a dense FP32 matrix.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_cuda(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode) {
  const auto mode = check_linear_args("bittorch::ternary_linear", input, weight, bias,
                                      threshold_factor, scale_mode);
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto [operand, scale] = ternarize(weight, threshold_factor, per_channel, mode,
                                    input.scalar_type(), /*dequantize=*/true);
  at::Tensor output = at::linear(input, operand, bias);
  return {std::move(output), std::move(operand), std::move(scale)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
    const at::Tensor& scale, std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  return ternary_linear_backward_reference(grad_output, input, operand, scale, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("ternarize", &ternarize_cuda);
  m.impl("_ternary_linear_forward", &ternary_linear_forward_cuda);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_cuda);
}

}  // namespace bittorch::ops::cuda
