#include "ops/quantize_activations/quantize_activations_kernels.cuh"

#include "ops/quantize_activations/activation_quantizer.cuh"
#include "ops/quantize_activations/quantize_activations.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

namespace bittorch::ops::cuda {

std::tuple<at::Tensor, at::Tensor> quantize_activation_rows(const at::Tensor& input_in,
                                                            quant::ActivationFormat format) {
  const c10::cuda::CUDAGuard device_guard(input_in.device());
  const at::Tensor input = input_in.contiguous();
  auto [values, scale] = empty_quantized_rows(input, format);
  const int64_t cols = input.size(-1);
  const int64_t rows = input.numel() / cols;  // cols >= 1 (checked)
  const auto quantize = [&, &values = values, &scale = scale](auto zero) {
    using in_t = decltype(zero);
    quantize_rows(input.data_ptr<in_t>(), rows, cols, activation_quantizer<in_t>(format, values, scale));
  };
  AT_DISPATCH_SWITCH(input.scalar_type(), "bittorch_quantize_activations_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { quantize(scalar_t{}); })
                         AT_DISPATCH_CASE(at::kHalf, [&] { quantize(scalar_t{}); })
                             AT_DISPATCH_CASE(at::kBFloat16, [&] { quantize(scalar_t{}); }));
  return {values, scale};
}

}  // namespace bittorch::ops::cuda
