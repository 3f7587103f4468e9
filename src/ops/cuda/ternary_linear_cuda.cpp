// CUDA implementation of the bittorch:: ops. Quantization is our own fused kernels
// (ternarize_kernels.cu, activation_kernels.cu); the matrix products are cuBLAS/cuBLASLt
// through ATen, on the current stream.
//
// 16-bit activations: the ternary operand codes * scale is written in the activations'
// dtype (exact in float32; in float16/bfloat16 each row's nonzeros are +-scale rounded once,
// the operand the CPU reference builds) and multiplied by at::linear.
// 8-bit activations: FP8 e4m3 codes times FP8 activations through at::_scaled_mm, both
// scales and the bias in its epilogue; INT8 through at::_int_mm, then the epilogue; shapes
// those products refuse run the same exact 8-bit values through a bfloat16 product with
// float32 sums.

#include "ops/checks.h"
#include "ops/cpu/ternary_linear_cpu.h"
#include "ops/cuda/activation_kernels.cuh"
#include "ops/cuda/eight_bit_product.h"
#include "ops/cuda/ternarize_kernels.cuh"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <mutex>
#include <set>
#include <string_view>
#include <tuple>

namespace bittorch::ops::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_cuda(const at::Tensor& weight, double threshold_factor,
                                                  bool per_channel, c10::string_view scale_mode) {
  const auto mode = check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  check_finite("bittorch::ternarize", "weight", weight);
  auto q = ternarize(weight, threshold_factor, per_channel, mode, {weight.scalar_type(), std::nullopt});
  return {q.codes, q.scale};
}

std::tuple<at::Tensor, at::Tensor> quantize_activations_cuda(const at::Tensor& input,
                                                             c10::string_view format) {
  const auto parsed = check_activation_args("bittorch::quantize_activations", input, format);
  return quantize_activation_rows(input, parsed);
}

// cuBLASLt has no FP8 kernel for a few shapes that meet the documented size rules (seen on an
// H100: one row with in_features = 11008). Such a call fails before it launches anything; the
// shape is remembered and runs the fallback product from then on.
using Fp8ProductKey = std::tuple<c10::DeviceIndex, int64_t, int64_t, int64_t, at::ScalarType, bool>;

class Fp8ShapesWithoutKernel {
 public:
  bool contains(const Fp8ProductKey& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    return keys_.count(key) != 0;
  }
  void add(const Fp8ProductKey& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    keys_.insert(key);
  }

 private:
  std::mutex mutex_;
  std::set<Fp8ProductKey> keys_;
};

Fp8ShapesWithoutKernel& fp8_shapes_without_kernel() {
  static Fp8ShapesWithoutKernel shapes;
  return shapes;
}

}  // namespace

bool has_fp8_tensor_cores(c10::DeviceIndex device) {
  const auto* props = at::cuda::getDeviceProperties(device < 0 ? at::cuda::current_device() : device);
  return props->major * 10 + props->minor >= 89;
}

at::Tensor eight_bit_product(const at::Tensor& values, const at::Tensor& input_scale,
                             const at::Tensor& codes, const at::Tensor& weight_scale,
                             const std::optional<at::Tensor>& bias, quant::ActivationFormat format,
                             at::ScalarType dtype) {
  const int64_t in_features = codes.size(1), out_features = codes.size(0);
  const at::Tensor rows = values.reshape({-1, in_features});
  const at::Tensor row_scale = input_scale.reshape({-1, 1});
  const int64_t num_rows = rows.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor output;
  // cuBLASLt's FP8 and INT8 products need these sizes (and FP8 tensor cores).
  const Fp8ProductKey key{codes.device().index(), num_rows, in_features, out_features, dtype, has_bias};
  if (format == quant::ActivationFormat::Float8E4M3 && num_rows > 0 && in_features % 16 == 0 &&
      out_features % 16 == 0 && has_fp8_tensor_cores() && !fp8_shapes_without_kernel().contains(key)) {
    const at::Tensor column_scale = weight_scale.reshape({1, -1}).expand({1, out_features}).contiguous();
    // The epilogue adds a float16/bfloat16 bias only.
    const bool bias_in_epilogue = has_bias && dtype != at::kFloat;
    try {
      output = at::_scaled_mm(rows, codes.t(), row_scale, column_scale,
                              bias_in_epilogue ? bias : std::nullopt, std::nullopt, dtype,
                              /*use_fast_accum=*/true);
      if (has_bias && !bias_in_epilogue) output.add_(*bias);
    } catch (const c10::Error& error) {
      if (std::string_view(error.what()).find("CUBLAS_STATUS_NOT_SUPPORTED") == std::string_view::npos) throw;
      fp8_shapes_without_kernel().add(key);
    }
  }
  if (!output.defined()) {
    const bool int8_product = format == quant::ActivationFormat::Int8 && num_rows > 16 &&
                              in_features % 8 == 0 && out_features % 8 == 0;
    // 8-bit values and ternary codes are exact in bfloat16, and so are their products.
    const at::Tensor accumulator =
        int8_product ? at::_int_mm(rows, codes.t())
                     : at::mm(rows.to(at::kBFloat16), codes.to(at::kBFloat16).t(), at::kFloat);
    output = scale_accumulator(accumulator, row_scale, weight_scale, bias, dtype);
  }
  return output.view(linear_output_shape(values, out_features));
}

namespace {

// Returns (output, operand, scale): the backward reuses the operand, so the weight is
// quantized once per step and never copied to a dense FP32 matrix.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ternary_linear_forward_cuda(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    double threshold_factor, bool per_channel, c10::string_view scale_mode,
    c10::string_view activation_format, bool keep_operand) {
  const auto args = check_linear_args("bittorch::ternary_linear", input, weight, bias,
                                      threshold_factor, scale_mode, activation_format);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const auto dtype = input.scalar_type();
  if (args.activation_format == quant::ActivationFormat::None) {
    auto q = ternarize(weight, threshold_factor, per_channel, args.scale_mode, {std::nullopt, dtype});
    at::Tensor output = at::linear(input, q.operand, bias);
    return {std::move(output), std::move(q.operand), std::move(q.scale)};
  }
  const auto codes_dtype =
      args.activation_format == quant::ActivationFormat::Int8 ? at::kChar : at::kFloat8_e4m3fn;
  auto q = ternarize(weight, threshold_factor, per_channel, args.scale_mode,
                     {codes_dtype, keep_operand ? std::optional(dtype) : std::nullopt});
  const auto [values, input_scale] = quantize_activation_rows(input, args.activation_format);
  at::Tensor output = eight_bit_product(values, input_scale, q.codes, q.scale, bias,
                                        args.activation_format, dtype);
  return {std::move(output), std::move(q.operand), std::move(q.scale)};
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
  m.impl("quantize_activations", &quantize_activations_cuda);
  m.impl("_ternary_linear_forward", &ternary_linear_forward_cuda);
  m.impl("_ternary_linear_backward", &ternary_linear_backward_cuda);
}

}  // namespace bittorch::ops::cuda
