// The gemv variant of packed_ternary_linear (variants.h): float32 activations.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/packed_codes.cuh"

namespace bittorch::ops::cuda {
namespace {

constexpr int kGemvWarps = 8;
constexpr int kOutPerWarp = 2;

// out[m, n] = (sum_k code[n, k] * x[m, k]) * scale[n] + bias[n] for the kRows rows of this
// block's tile. Each warp owns kOutPerWarp output features; lanes read consecutive 16-byte
// chunks of codes (coalesced). x rows are `x_stride` elements apart and padded to whole words
// with zeros; kWordsPerLoad is 4 (16-byte loads, rows of a multiple of 4 words) or 1.
template <int kRows, int kWordsPerLoad>
__global__ void __launch_bounds__(kGemvWarps * 32)
    packed_gemv_kernel(const float* __restrict__ x, int64_t x_stride, int64_t rows, const uint32_t* __restrict__ packed,
                       int64_t words, int64_t out_features, const float* __restrict__ scale, bool per_channel,
                       const float* __restrict__ bias, bool squared_relu, float* __restrict__ out) {
  wait_for_prior_grid_and_allow_next();
  const int lane = threadIdx.x % 32;
  const int64_t n0 = (int64_t{blockIdx.x} * kGemvWarps + threadIdx.x / 32) * kOutPerWarp;
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
        const auto* xv = reinterpret_cast<const float4*>(x + (m0 + r) * x_stride + k0);
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const float4 x4 = xv[v];
#pragma unroll
          for (int o = 0; o < kOutPerWarp; ++o) {
            acc[o][r] = fmaf(codes[o][4 * v], x4.x, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 1], x4.y, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 2], x4.z, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 3], x4.w, acc[o][r]);
          }
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
        out[m * out_features + n] =
            apply_packed_epilogue(v * scale[per_channel ? n : 0] + (bias != nullptr ? bias[n] : 0.0F), squared_relu);
      }
    }
  }
}

template <int kRows>
void launch_gemv(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                 const float* bias, bool squared_relu, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const dim3 grid(static_cast<unsigned>((out_features + kGemvWarps * kOutPerWarp - 1) / (kGemvWarps * kOutPerWarp)),
                  static_cast<unsigned>((rows + kRows - 1) / kRows));
  const auto* codes = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto kernel = words % 4 == 0 ? packed_gemv_kernel<kRows, 4> : packed_gemv_kernel<kRows, 1>;
  launch_dependent(kernel, grid, dim3(kGemvWarps * 32), 0, stream, x.data_ptr<float>(), x.size(1), rows, codes, words,
                   out_features, scale.data_ptr<float>(), scale.size(0) > 1, bias, squared_relu, out.data_ptr<float>());
}

}  // namespace

void gemv_product(const PackedProduct& p) {
  TORCH_CHECK(p.x.scalar_type() == at::kFloat,
              "bittorch::packed_ternary_linear: kernel \"gemv\" takes float32 "
              "activations without 8-bit quantization, not ",
              p.x.scalar_type());
  const int64_t rows = p.x.size(0);
  const float* bias = p.bias.defined() ? p.bias.data_ptr<float>() : nullptr;
  at::Tensor out = p.out;
  if (rows == 1) return launch_gemv<1>(p.x, rows, p.packed, p.scale, bias, p.squared_relu, out);
  if (rows == 2) return launch_gemv<2>(p.x, rows, p.packed, p.scale, bias, p.squared_relu, out);
  launch_gemv<4>(p.x, rows, p.packed, p.scale, bias, p.squared_relu, out);
}

}  // namespace bittorch::ops::cuda
