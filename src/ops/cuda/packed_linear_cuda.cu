// CUDA kernels of bittorch::packed_ternary_linear.
//
// Up to kMaxGemvRows (4) input rows: a GEMV-style kernel that streams the 2-bit codes once per
// tile of kRows input rows (each warp owns kOutPerWarp output rows; lanes read consecutive
// 16-byte chunks, coalesced), turns each code into -1/0/+1 in registers and accumulates
// code * x in float32, then applies the scales and bias. More rows: the codes are expanded
// to the layer's operand (bfloat16 codes * scale, or 8-bit codes) and the product is cuBLAS's.

#include "ops/checks.h"
#include "ops/cpu/ternary_linear_cpu.h"
#include "ops/cuda/activation_kernels.cuh"
#include "ops/cuda/eight_bit_product.h"

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Float8_e4m3fn.h>
#include <torch/library.h>

#include <cstdint>

namespace bittorch::ops::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kOutPerWarp = 2;
// Beyond 4 rows the GEMV's arithmetic costs more than expanding the codes for cuBLAS.
constexpr int64_t kMaxGemvRows = 4;

__device__ __forceinline__ float code_at(uint32_t word, int i) {
  return static_cast<float>(static_cast<int32_t>(word << (30 - 2 * i)) >> 30);
}

// 16 elements, stored with one 16-byte-aligned vector write per 16 bytes.
template <typename T>
struct alignas(16) Pack16 {
  T v[16];
};

// 16 consecutive elements (16-element aligned) as floats, in 16-byte loads.
template <typename in_t>
__device__ __forceinline__ void load16(const in_t* p, float (&v)[16]) {
  constexpr int kPerLoad = static_cast<int>(16 / sizeof(in_t));
#pragma unroll
  for (int q = 0; q < 16 / kPerLoad; ++q) {
    const uint4 raw = reinterpret_cast<const uint4*>(p)[q];
    const auto* elements = reinterpret_cast<const in_t*>(&raw);
#pragma unroll
    for (int t = 0; t < kPerLoad; ++t) v[q * kPerLoad + t] = static_cast<float>(elements[t]);
  }
}

// out[m, n] = (sum_k code[n, k] * x[m, k]) * row_scale[m] * scale[n] + bias[n] for the
// kRows rows of this block's tile. x rows are `x_stride` elements apart and padded to whole
// words with zeros; kWordsPerLoad is 4 (16-byte loads, rows of a multiple of 4 words) or 1.
template <typename in_t, typename out_t, int kRows, int kWordsPerLoad>
__global__ void __launch_bounds__(kWarps * 32)
    packed_gemv_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows,
                       const uint32_t* __restrict__ packed, int64_t words, int64_t out_features,
                       const float* __restrict__ scale, bool per_channel,
                       const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                       out_t* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t n0 = (int64_t{blockIdx.x} * kWarps + threadIdx.x / 32) * kOutPerWarp;
  const int64_t m0 = int64_t{blockIdx.y} * kRows;
  if (n0 >= out_features) return;
  float acc[kOutPerWarp][kRows] = {};
  for (int64_t w0 = int64_t{lane} * kWordsPerLoad; w0 < words; w0 += 32 * kWordsPerLoad) {
    uint32_t code_words[kOutPerWarp][kWordsPerLoad];
#pragma unroll
    for (int o = 0; o < kOutPerWarp; ++o) {
      const int64_t n = min(n0 + o, out_features - 1);  // a missing last row repeats a real one
      if constexpr (kWordsPerLoad == 4) {
        const uint4 v = *reinterpret_cast<const uint4*>(packed + n * words + w0);
        code_words[o][0] = v.x;
        code_words[o][1] = v.y;
        code_words[o][2] = v.z;
        code_words[o][3] = v.w;
      } else {
        code_words[o][0] = packed[n * words + w0];
      }
    }
#pragma unroll
    for (int j = 0; j < kWordsPerLoad; ++j) {
      const int64_t k0 = (w0 + j) * 16;
      float codes[kOutPerWarp][16];
#pragma unroll
      for (int o = 0; o < kOutPerWarp; ++o) {
#pragma unroll
        for (int i = 0; i < 16; ++i) codes[o][i] = code_at(code_words[o][j], i);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (m0 + r >= rows) break;
        float xv[16];
        load16(x + (m0 + r) * x_stride + k0, xv);
#pragma unroll
        for (int o = 0; o < kOutPerWarp; ++o) {
#pragma unroll
          for (int i = 0; i < 16; ++i) acc[o][r] = fmaf(codes[o][i], xv[i], acc[o][r]);
        }
      }
    }
  }
#pragma unroll
  for (int o = 0; o < kOutPerWarp; ++o) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v = acc[o][r];
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffU, v, offset);
      const int64_t n = n0 + o, m = m0 + r;
      if (lane == 0 && n < out_features && m < rows) {
        float y = v;
        if (row_scale != nullptr) y *= row_scale[m];
        y *= scale[per_channel ? n : 0];
        if (bias != nullptr) y += static_cast<float>(bias[n]);
        out[m * out_features + n] = static_cast<out_t>(y);
      }
    }
  }
}

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
__global__ void expand_packed_kernel(const uint32_t* __restrict__ packed, int64_t words,
                                     int64_t in_features, int64_t total_words,
                                     const float* __restrict__ scale, bool per_channel,
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
at::Tensor expand_packed(const at::Tensor& packed, int64_t in_features, const at::Tensor& scale,
                         at::ScalarType dtype) {
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

template <typename in_t, typename out_t, int kRows>
void launch_gemv(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                 const at::Tensor& row_scale, const std::optional<at::Tensor>& bias, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const dim3 grid(static_cast<unsigned>((out_features + kWarps * kOutPerWarp - 1) / (kWarps * kOutPerWarp)),
                  static_cast<unsigned>((rows + kRows - 1) / kRows));
  const auto* codes = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  const bool vector_loads = words % 4 == 0;
  const auto* bias_data = bias.has_value() && bias->defined() ? bias->data_ptr<out_t>() : nullptr;
  const auto* row_scale_data = row_scale.defined() ? row_scale.data_ptr<float>() : nullptr;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto* x_data = reinterpret_cast<const in_t*>(x.data_ptr());
  if (vector_loads) {
    packed_gemv_kernel<in_t, out_t, kRows, 4><<<grid, kWarps * 32, 0, stream>>>(
        x_data, x.size(1), rows, codes, words, out_features, scale.data_ptr<float>(), scale.size(0) > 1,
        row_scale_data, bias_data, out.data_ptr<out_t>());
  } else {
    packed_gemv_kernel<in_t, out_t, kRows, 1><<<grid, kWarps * 32, 0, stream>>>(
        x_data, x.size(1), rows, codes, words, out_features, scale.data_ptr<float>(), scale.size(0) > 1,
        row_scale_data, bias_data, out.data_ptr<out_t>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename in_t, typename out_t>
void gemv(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
          const at::Tensor& row_scale, const std::optional<at::Tensor>& bias, at::Tensor& out) {
  if (rows == 1) return launch_gemv<in_t, out_t, 1>(x, rows, packed, scale, row_scale, bias, out);
  if (rows == 2) return launch_gemv<in_t, out_t, 2>(x, rows, packed, scale, row_scale, bias, out);
  launch_gemv<in_t, out_t, 4>(x, rows, packed, scale, row_scale, bias, out);
}

at::Tensor packed_ternary_linear_cuda(const at::Tensor& input, const at::Tensor& packed_in,
                                      const at::Tensor& scale_in, const std::optional<at::Tensor>& bias,
                                      int64_t in_features, c10::string_view activation_format) {
  const auto format = check_packed_linear_args("bittorch::packed_ternary_linear", input, packed_in,
                                               scale_in, bias, in_features, activation_format);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor packed = packed_in.contiguous(), scale = scale_in.contiguous();
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const at::Tensor rows_in = input.reshape({-1, in_features});
  const int64_t rows = rows_in.size(0);
  const auto dtype = input.scalar_type();
  const auto out_shape = linear_output_shape(input, out_features);
  const bool eight_bit = format != quant::ActivationFormat::None;
  if (rows > kMaxGemvRows) {
    if (eight_bit) {
      const auto [values, input_scale] = quantize_activation_rows(rows_in, format);
      const at::Tensor codes = format == quant::ActivationFormat::Int8
                                   ? expand_packed<int8_t>(packed, in_features, scale, at::kChar)
                                   : expand_packed<c10::Float8_e4m3fn>(packed, in_features, scale, at::kFloat8_e4m3fn);
      return eight_bit_product(values, input_scale, codes, scale, bias, format, dtype).view(out_shape);
    }
    at::Tensor operand;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "bittorch_expand_packed", [&] {
      operand = expand_packed<scalar_t>(packed, in_features, scale, dtype);
    });
    return at::linear(rows_in, operand, bias).view(out_shape);
  }
  // The GEMV reads whole words: the input padded with zeros to words * 16 columns.
  at::Tensor x;
  at::Tensor row_scale;
  if (eight_bit) {
    auto [values, input_scale] = quantize_activation_rows(rows_in, format);
    row_scale = input_scale;
    x = at::zeros({rows, words * quant::kCodesPerWord}, values.options());
    x.narrow(1, 0, in_features).copy_(values);
  } else {
    x = at::zeros({rows, words * quant::kCodesPerWord}, rows_in.options());
    x.narrow(1, 0, in_features).copy_(rows_in);
  }
  at::Tensor out = at::empty({rows, out_features}, input.options());
  if (rows == 0) return out.view(out_shape);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "bittorch_packed_gemv", [&] {
    using out_t = scalar_t;
    if (format == quant::ActivationFormat::Int8) {
      gemv<int8_t, out_t>(x, rows, packed, scale, row_scale, bias, out);
    } else if (format == quant::ActivationFormat::Float8E4M3) {
      gemv<c10::Float8_e4m3fn, out_t>(x, rows, packed, scale, row_scale, bias, out);
    } else {
      gemv<out_t, out_t>(x, rows, packed, scale, row_scale, bias, out);
    }
  });
  return out.view(out_shape);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_cuda);
}

}  // namespace bittorch::ops::cuda
