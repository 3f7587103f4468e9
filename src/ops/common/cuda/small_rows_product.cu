#include "ops/common/cuda/small_rows_product.h"

#include "ops/common/cuda/row_quantize.cuh"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Half.h>

namespace bittorch::ops::cuda {
namespace {

// A warp covers 512 columns per step, 16 per lane (one 16-byte load of codes per weight
// row), for 4 weight rows: every activation value loaded is used 4 times. A block is 8 warps
// and 32 weight rows; no shared memory, no block barrier.
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kColumnsPerLane = 16;
constexpr int kColumnsPerStep = 32 * kColumnsPerLane;
constexpr int kWeightRowsPerWarp = 4;

// A ternary code's byte: 0 is 0, a set sign bit is -1, anything else +1. That reads int8's
// 0x00/0xFF/0x01 and float8_e4m3fn's 0x00/0xB8/0x38 alike.
__device__ __forceinline__ float ternary_code(uint8_t byte) {
  return byte == 0 ? 0.0F : ((byte & 0x80) != 0 ? -1.0F : 1.0F);
}

// 16 consecutive elements of `row` from `col` as float: 16-byte loads when kVector (the caller
// checked alignment and that whole groups of 16 exist), else one by one, zero past `cols`.
template <typename T, bool kVector, typename Out>
__device__ __forceinline__ void load16(const T* __restrict__ row, int64_t col, int64_t cols,
                                       Out (&out)[kColumnsPerLane]) {
  if constexpr (kVector) {
    constexpr int kPerLoad = static_cast<int>(16 / sizeof(T));
#pragma unroll
    for (int i = 0; i < kColumnsPerLane; i += kPerLoad) {
      const auto pack = *reinterpret_cast<const Pack<T, kPerLoad>*>(row + col + i);
#pragma unroll
      for (int j = 0; j < kPerLoad; ++j) out[i + j] = static_cast<Out>(pack.v[j]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kColumnsPerLane; ++i) out[i] = col + i < cols ? static_cast<Out>(row[col + i]) : Out(0);
  }
}

template <typename in_t, typename out_t, int kMaxRows, bool kVector>
__global__ void __launch_bounds__(kThreads)
    small_rows_kernel(const in_t* __restrict__ x, const float* __restrict__ row_scale,
                      const uint8_t* __restrict__ codes, const float* __restrict__ weight_scale, bool per_channel,
                      const out_t* __restrict__ bias, out_t* __restrict__ out, int rows, int64_t cols,
                      int64_t out_features) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t first = (int64_t{blockIdx.x} * kWarps + threadIdx.x / 32) * kWeightRowsPerWarp;
  if (first >= out_features) return;  // the whole warp: nothing below waits for the others
  const int64_t weight_rows = out_features - first < kWeightRowsPerWarp ? out_features - first : kWeightRowsPerWarp;

  float acc[kWeightRowsPerWarp][kMaxRows] = {};
  for (int64_t col = int64_t{lane} * kColumnsPerLane; col < cols; col += kColumnsPerStep) {
    float code[kWeightRowsPerWarp][kColumnsPerLane];
#pragma unroll
    for (int r = 0; r < kWeightRowsPerWarp; ++r) {
      uint8_t bytes[kColumnsPerLane] = {};
      if (r < weight_rows) load16<uint8_t, kVector>(codes + (first + r) * cols, col, cols, bytes);
#pragma unroll
      for (int i = 0; i < kColumnsPerLane; ++i) code[r][i] = ternary_code(bytes[i]);
    }
    // Every loop over rows is unrolled whole (the accumulators stay in registers); rows past
    // `rows` add zeros (kMaxRows is less than twice `rows`).
#pragma unroll
    for (int m = 0; m < kMaxRows; ++m) {
      float value[kColumnsPerLane] = {};
      if (m < rows) load16<in_t, kVector>(x + m * cols, col, cols, value);
#pragma unroll
      for (int r = 0; r < kWeightRowsPerWarp; ++r) {
#pragma unroll
        for (int i = 0; i < kColumnsPerLane; ++i) acc[r][m] = fmaf(code[r][i], value[i], acc[r][m]);
      }
    }
  }

  // The warp's sums (a fixed butterfly: deterministic), then lane m writes row m's outputs.
#pragma unroll
  for (int m = 0; m < kMaxRows; ++m) {
#pragma unroll
    for (int r = 0; r < kWeightRowsPerWarp; ++r) {
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) acc[r][m] += __shfl_xor_sync(0xffffffffU, acc[r][m], offset);
    }
    if (lane != m || m >= rows) continue;
    const float input_scale = row_scale[m];
#pragma unroll
    for (int r = 0; r < kWeightRowsPerWarp; ++r) {
      if (r >= weight_rows) continue;
      const int64_t n = first + r;
      float scale = weight_scale[per_channel ? n : 0];
      // The epilogue of scale_accumulator: sum * row scale * weight scale + bias, rounded once.
      float y = acc[r][m];
      y *= input_scale;
      y *= scale;
      if (bias != nullptr) y += static_cast<float>(bias[n]);
      out[m * out_features + n] = static_cast<out_t>(y);
    }
  }
}

template <typename in_t, typename out_t, int kMaxRows>
void launch_rows(const at::Tensor& x, const at::Tensor& row_scale, const at::Tensor& codes,
                 const at::Tensor& weight_scale, const at::Tensor& bias, at::Tensor& out) {
  const int64_t rows = x.size(0), cols = x.size(1), out_features = codes.size(0);
  const int64_t weight_rows_per_block = int64_t{kWarps} * kWeightRowsPerWarp;
  const auto blocks = static_cast<unsigned>((out_features + weight_rows_per_block - 1) / weight_rows_per_block);
  const auto* x_data = static_cast<const in_t*>(x.const_data_ptr());
  const auto* code_data = static_cast<const uint8_t*>(codes.const_data_ptr());
  const bool vector = cols % kColumnsPerLane == 0 && reinterpret_cast<std::uintptr_t>(x_data) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(code_data) % 16 == 0;
  const float* row_scale_data = row_scale.const_data_ptr<float>();
  const auto* bias_data = bias.defined() ? static_cast<const out_t*>(bias.const_data_ptr()) : nullptr;
  const bool per_channel = weight_scale.numel() != 1;
  auto* out_data = static_cast<out_t*>(out.data_ptr());
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (vector) {
    small_rows_kernel<in_t, out_t, kMaxRows, true>
        <<<blocks, kThreads, 0, stream>>>(x_data, row_scale_data, code_data, weight_scale.const_data_ptr<float>(),
                                          per_channel, bias_data, out_data, static_cast<int>(rows), cols, out_features);
  } else {
    small_rows_kernel<in_t, out_t, kMaxRows, false>
        <<<blocks, kThreads, 0, stream>>>(x_data, row_scale_data, code_data, weight_scale.const_data_ptr<float>(),
                                          per_channel, bias_data, out_data, static_cast<int>(rows), cols, out_features);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Registers (kMaxRows accumulators per weight row) sized to the rows: 1, 2 or 4.
template <typename in_t, typename out_t>
void launch(const at::Tensor& x, const at::Tensor& row_scale, const at::Tensor& codes, const at::Tensor& weight_scale,
            const at::Tensor& bias, at::Tensor& out) {
  const int64_t rows = x.size(0);
  if (rows == 1) {
    launch_rows<in_t, out_t, 1>(x, row_scale, codes, weight_scale, bias, out);
  } else if (rows == 2) {
    launch_rows<in_t, out_t, 2>(x, row_scale, codes, weight_scale, bias, out);
  } else {
    launch_rows<in_t, out_t, kSmallRowsMax>(x, row_scale, codes, weight_scale, bias, out);
  }
}

template <typename in_t>
void launch_eight_bit(const at::Tensor& x, const at::Tensor& row_scale, const at::Tensor& codes,
                      const at::Tensor& weight_scale, const at::Tensor& bias, at::Tensor& out) {
  switch (out.scalar_type()) {
    case at::kFloat:
      return launch<in_t, float>(x, row_scale, codes, weight_scale, bias, out);
    case at::kHalf:
      return launch<in_t, at::Half>(x, row_scale, codes, weight_scale, bias, out);
    case at::kBFloat16:
      return launch<in_t, at::BFloat16>(x, row_scale, codes, weight_scale, bias, out);
    default:
      TORCH_INTERNAL_ASSERT(false, "small_rows_product: output dtype ", out.scalar_type());
  }
}

}  // namespace

at::Tensor small_rows_product(const at::Tensor& x_in, const at::Tensor& row_scale_in, const at::Tensor& codes_in,
                              const at::Tensor& weight_scale_in, const std::optional<at::Tensor>& bias_in,
                              at::ScalarType dtype) {
  TORCH_INTERNAL_ASSERT(x_in.dim() == 2 && x_in.size(0) <= kSmallRowsMax && codes_in.dim() == 2 &&
                        x_in.size(1) == codes_in.size(1));
  TORCH_INTERNAL_ASSERT(codes_in.scalar_type() == at::kChar || codes_in.scalar_type() == at::kFloat8_e4m3fn);
  TORCH_INTERNAL_ASSERT(weight_scale_in.scalar_type() == at::kFloat);
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), codes = codes_in.contiguous(), weight_scale = weight_scale_in.contiguous();
  const at::Tensor row_scale = row_scale_in.to(at::kFloat).contiguous();
  const at::Tensor bias = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : at::Tensor();
  TORCH_INTERNAL_ASSERT(!bias.defined() || bias.scalar_type() == dtype);
  at::Tensor out = at::empty({x.size(0), codes.size(0)}, x.options().dtype(dtype));
  if (out.numel() == 0) return out;
  switch (x.scalar_type()) {
    case at::kChar:
      launch_eight_bit<int8_t>(x, row_scale, codes, weight_scale, bias, out);
      break;
    case at::kFloat8_e4m3fn:
      launch_eight_bit<c10::Float8_e4m3fn>(x, row_scale, codes, weight_scale, bias, out);
      break;
    default:
      TORCH_INTERNAL_ASSERT(false, "small_rows_product: activations of dtype ", x.scalar_type());
  }
  return out;
}

}  // namespace bittorch::ops::cuda
