// CUDA implementation of bittorch::ternary_linear's halves and backward. Quantization is our
// own fused kernel (ops/ternarize/ternarize_kernels.cu, ops/quantize_activations); the matrix
// products are cuBLAS/cuBLASLt through ATen, on the current stream.
//
// 16-bit activations: the ternary operand codes * scale is written in the activations'
// dtype (exact in float32; in float16/bfloat16 each row's nonzeros are +-scale rounded once,
// the operand the CPU reference builds) and multiplied by at::linear.
// 8-bit activations: 8-bit codes times 8-bit activations (ops/common/cuda/eight_bit_product).

#include "ops/common/checks.h"
#include "ops/common/cuda/device.h"
#include "ops/common/cuda/eight_bit_product.h"
#include "ops/quantize_activations/quantize_activations_kernels.cuh"
#include "ops/reference/reference.h"
#include "ops/ternarize/ternarize_kernels.cuh"
#include "ops/ternary_linear/ternary_linear.h"
#include "ops/ternary_linear/ternary_linear_kernels.cuh"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

// (operand, codes, scale) in one pass over the weight (_ternary_linear_quantize_weight).
TernarizedOnDevice quantize_weight(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                   const LinearArgs& args, at::ScalarType dtype, bool keep_operand) {
  if (args.activation_format == quant::ActivationFormat::None) {
    return ternarize_on_device(weight, threshold_factor, per_channel, args.scale_mode, {std::nullopt, dtype});
  }
  return ternarize_on_device(
      weight, threshold_factor, per_channel, args.scale_mode,
      {eight_bit_dtype(args.activation_format), keep_operand ? std::optional(dtype) : std::nullopt});
}

// The product with the quantized weight (_ternary_linear_quantized_forward), from the input
// quantized here unless it came quantized (input_values defined).
at::Tensor quantized_forward(const at::Tensor& input, const at::Tensor& operand, const at::Tensor& codes,
                             const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                             quant::ActivationFormat format, const at::Tensor& input_values,
                             const at::Tensor& input_scale) {
  if (format == quant::ActivationFormat::None) return at::linear(input, operand, bias);
  const auto [values, row_scale] =
      input_values.defined() ? std::tuple(input_values, input_scale) : quantize_activation_rows(input, format);
  return eight_bit_product(values, row_scale, codes, scale, bias, format, input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_weight_cuda(const at::Tensor& weight, double threshold_factor,
                                                                    bool per_channel, c10::string_view scale_mode,
                                                                    c10::string_view activation_format,
                                                                    at::ScalarType dtype, bool keep_operand) {
  const auto args = check_quantize_weight_args("bittorch::ternary_linear_quantize_weight", weight, threshold_factor,
                                               scale_mode, activation_format, dtype);
  const c10::cuda::CUDAGuard device_guard(weight.device());
  auto q = quantize_weight(weight, threshold_factor, per_channel, args, dtype, keep_operand);
  return {std::move(q.operand), std::move(q.codes), std::move(q.scale)};
}

at::Tensor quantized_forward_cuda(const at::Tensor& input, const std::optional<at::Tensor>& operand,
                                  const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                  const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                  const std::optional<at::Tensor>& input_values,
                                  const std::optional<at::Tensor>& input_scale) {
  const auto format = check_quantized_linear_args("bittorch::ternary_linear_quantized", input, operand, codes, scale,
                                                  bias, activation_format, input_values, input_scale);
  const c10::cuda::CUDAGuard device_guard(input.device());
  return quantized_forward(input, operand.value_or(at::Tensor()), codes.value_or(at::Tensor()), scale, bias, format,
                           input_values.value_or(at::Tensor()), input_scale.value_or(at::Tensor()));
}

// grad_input from FP8 e5m2 gradients times the codes in e4m3 (exact), both tensor-scaled,
// through cuBLASLt (at::_scaled_mm), whose FP8 products take both operands K-major: the codes
// transposed, [in, out] row-major, which is the column-major second operand.
at::Tensor fp8_grad_input(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand,
                          const at::Tensor& scale) {
  const int64_t out_features = operand.size(0);
  const auto [values, tensor_scale] =
      quantize_gradient_rows(grad_output.reshape({-1, out_features}).contiguous(), scale);
  const at::Tensor codes_t = transposed_fp8_codes(operand.contiguous());
  const at::Tensor one = at::ones({1}, tensor_scale.options());
  return at::_scaled_mm(values, codes_t.t(), tensor_scale, one, std::nullopt, std::nullopt, grad_output.scalar_type(),
                        /*use_fast_accum=*/false)
      .view(input.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& operand, const at::Tensor& scale,
    std::array<bool, 3> output_mask, c10::string_view gradient_format) {
  const auto format = check_backward_args("bittorch::ternary_linear", grad_output, gradient_format);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  // cuBLASLt's FP8 product: FP8 tensor cores, both product sizes multiples of 16 and a 16- or
  // 32-bit output; else the reference computes the same values in float32.
  const bool fp8_product = format == quant::GradientFormat::Float8E5M2 && output_mask[0] &&
                           has_fp8_tensor_cores(grad_output.get_device()) && operand.size(0) % 16 == 0 &&
                           operand.size(1) % 16 == 0 && grad_output.numel() > 0 &&
                           grad_output.scalar_type() != at::kDouble;
  if (!fp8_product) return ternary_linear_backward_reference(grad_output, input, operand, scale, output_mask, format);
  auto [unused, grad_weight, grad_bias] =
      ternary_linear_backward_reference(grad_output, input, operand, scale, {false, output_mask[1], output_mask[2]});
  return {fp8_grad_input(grad_output, input, operand, scale), std::move(grad_weight), std::move(grad_bias)};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("_ternary_linear_backward", &ternary_linear_backward_cuda);
  m.impl("_ternary_linear_quantize_weight", &quantize_weight_cuda);
  m.impl("_ternary_linear_quantized_forward", &quantized_forward_cuda);
}

}  // namespace bittorch::ops::cuda
