#include "ops/quantize_activations/quantize_activations_kernels.cuh"

#include "ops/quantize_activations/activation_quantizer.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

namespace bittorch::ops::cuda {

std::tuple<at::Tensor, at::Tensor> quantize_activation_rows(const at::Tensor& input_in,
                                                            quant::ActivationFormat format) {
  const c10::cuda::CUDAGuard device_guard(input_in.device());
  const at::Tensor input = input_in.contiguous();
  const bool int8 = format == quant::ActivationFormat::Int8;
  auto values = at::empty(input.sizes(), input.options().dtype(int8 ? at::kChar : at::kFloat8_e4m3fn));
  auto scale_shape = input.sizes().vec();
  scale_shape.back() = 1;
  auto scale = at::empty(scale_shape, input.options().dtype(at::kFloat));
  const int64_t cols = input.size(-1);
  const int64_t rows = input.numel() / cols;  // cols >= 1 (checked)
  const auto quantize = [&](auto zero) {
    using in_t = decltype(zero);
    quantize_rows(input.data_ptr<in_t>(), rows, cols,
                  ActivationQuantizer<in_t>{int8, max_activation_code(format), scale.data_ptr<float>(),
                                            static_cast<uint8_t*>(values.data_ptr())});
  };
  AT_DISPATCH_SWITCH(input.scalar_type(), "bittorch_quantize_activations_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { quantize(scalar_t{}); })
                         AT_DISPATCH_CASE(at::kHalf, [&] { quantize(scalar_t{}); })
                             AT_DISPATCH_CASE(at::kBFloat16, [&] { quantize(scalar_t{}); }));
  return {values, scale};
}

}  // namespace bittorch::ops::cuda
