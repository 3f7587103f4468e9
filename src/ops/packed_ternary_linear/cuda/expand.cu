// The expand variant of packed_ternary_linear (variants.h): the codes expanded to the layer's
// operand, then cuBLAS's product (a tensor-core GEMM with tiles in shared memory, faster than
// the mma loop beyond a few dozen rows).

#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/common/cuda/eight_bit_product.h"
#include "ops/packed_ternary_linear/cuda/packed_codes.cuh"
#include "ops/quantize_activations/quantize_activations_kernels.cuh"

#include <ATen/Dispatch.h>
#include <c10/util/Float8_e4m3fn.h>

#include <algorithm>
#include <type_traits>

namespace bittorch::ops::cuda {
namespace {

// The codes of a packed matrix expanded to [out, in]: code * scale[n] in out_t, or for int8 /
// FP8 outputs the code itself. One thread per word (16 codes); rows of a multiple of 16
// columns are written in 16-byte stores.
template <typename out_t>
__device__ __forceinline__ out_t expanded(float code, float scale) {
  if constexpr (std::is_same_v<out_t, int8_t>) {
    return static_cast<int8_t>(code);
  } else if constexpr (std::is_same_v<out_t, c10::Float8_e4m3fn>) {
    return c10::Float8_e4m3fn(code);
  } else {
    return static_cast<out_t>(code * scale);
  }
}

template <typename out_t, bool kWholeWords>
__global__ void expand_packed_kernel(const uint32_t* __restrict__ packed, int64_t words, int64_t in_features,
                                     int64_t total_words, const float* __restrict__ scale, bool per_channel,
                                     out_t* __restrict__ out) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total_words;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = t / words, w = t % words;
    const uint32_t word = packed[t];
    const float s = scale[per_channel ? n : 0];
    out_t* row = out + n * in_features + w * 16;
    if constexpr (kWholeWords) {
      Pack16<out_t> values;
#pragma unroll
      for (int i = 0; i < 16; ++i) values.v[i] = expanded<out_t>(code_at(word, i), s);
      *reinterpret_cast<Pack16<out_t>*>(row) = values;
    } else {
      for (int i = 0; i < 16 && w * 16 + i < in_features; ++i) row[i] = expanded<out_t>(code_at(word, i), s);
    }
  }
}

template <typename out_t>
at::Tensor expand_packed(const at::Tensor& packed, int64_t in_features, const at::Tensor& scale, at::ScalarType dtype) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  auto out = at::empty({out_features, in_features}, packed.options().dtype(dtype));
  const int64_t total_words = out_features * words;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total_words + threads - 1) / threads,
                                           at::cuda::getCurrentDeviceProperties()->multiProcessorCount * int64_t{32});
  const auto* codes = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  auto* out_data = reinterpret_cast<out_t*>(out.data_ptr());
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (in_features % 16 == 0) {
    expand_packed_kernel<out_t, true><<<blocks, threads, 0, stream>>>(
        codes, words, in_features, total_words, scale.data_ptr<float>(), scale.size(0) > 1, out_data);
  } else {
    expand_packed_kernel<out_t, false><<<blocks, threads, 0, stream>>>(
        codes, words, in_features, total_words, scale.data_ptr<float>(), scale.size(0) > 1, out_data);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

at::Tensor expand_product(const at::Tensor& rows, const at::Tensor& packed, const at::Tensor& scale,
                          const std::optional<at::Tensor>& bias, int64_t in_features, quant::ActivationFormat format) {
  const auto dtype = rows.scalar_type();
  if (format != quant::ActivationFormat::None) {
    const auto [values, input_scale] = quantize_activation_rows(rows, format);
    const at::Tensor codes = format == quant::ActivationFormat::Int8
                                 ? expand_packed<int8_t>(packed, in_features, scale, at::kChar)
                                 : expand_packed<c10::Float8_e4m3fn>(packed, in_features, scale, at::kFloat8_e4m3fn);
    return eight_bit_product(values, input_scale, codes, scale, bias, format, dtype);
  }
  at::Tensor operand;
  AT_DISPATCH_SWITCH(
      dtype, "bittorch_expand_packed",
      AT_DISPATCH_CASE(at::kFloat, [&] { operand = expand_packed<scalar_t>(packed, in_features, scale, dtype); })
          AT_DISPATCH_CASE(at::kHalf, [&] { operand = expand_packed<scalar_t>(packed, in_features, scale, dtype); })
              AT_DISPATCH_CASE(at::kBFloat16,
                               [&] { operand = expand_packed<scalar_t>(packed, in_features, scale, dtype); }));
  return at::linear(rows, operand, bias);
}

}  // namespace bittorch::ops::cuda
