#include "ops/ternary_linear/ternary_linear_kernels.cuh"

#include "ops/common/cuda/row_quantize.cuh"
#include "ops/reference/reference.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Float8_e5m2.h>

#include <algorithm>
#include <cstdint>

namespace bittorch::ops::cuda {
namespace {

constexpr int kThreads = 256;
using FloatMax = cub::BlockReduce<float, kThreads>;

// g * weight_scale in float32, as the reference's broadcast product.
template <typename grad_t>
__device__ __forceinline__ float folded(grad_t g, const float* scale, bool per_channel, int64_t col) {
  return static_cast<float>(g) * scale[per_channel ? col : 0];
}

// max |g * scale| over the gradient, NaN kept, into *absmax_bits (zero before): the float's
// bits compare as unsigned integers the way non-negative floats (and +NaN above them) do.
template <typename grad_t, int N>
__global__ void __launch_bounds__(kThreads)
    folded_absmax(const grad_t* __restrict__ grad, const float* __restrict__ scale, bool per_channel, int64_t packs,
                  int64_t packs_per_row, unsigned int* absmax_bits) {
  float local = 0.0F;
  for (int64_t p = blockIdx.x * int64_t{kThreads} + threadIdx.x; p < packs; p += int64_t{gridDim.x} * kThreads) {
    const auto x = reinterpret_cast<const Pack<grad_t, N>*>(grad)[p];
    const int64_t col = (p % packs_per_row) * N;
#pragma unroll
    for (int i = 0; i < N; ++i) local = max_keeping_nan(local, fabsf(folded(x.v[i], scale, per_channel, col + i)));
  }
  __shared__ typename FloatMax::TempStorage storage;
  const float block_max = FloatMax(storage).Reduce(local, MaxOp{});
  if (threadIdx.x == 0) atomicMax(absmax_bits, __float_as_uint(block_max));
}

// The e5m2 values and the tensor scale, from the finished absmax.
template <typename grad_t, int N>
__global__ void __launch_bounds__(kThreads)
    write_e5m2(const grad_t* __restrict__ grad, const float* __restrict__ scale, bool per_channel, int64_t packs,
               int64_t packs_per_row, const unsigned int* absmax_bits, uint8_t* __restrict__ values,
               float* tensor_scale) {
  const float scale_of_tensor = floor_keeping_nan(__uint_as_float(*absmax_bits), kMinGradientAbsMax) / kMaxE5M2;
  if (blockIdx.x == 0 && threadIdx.x == 0) *tensor_scale = scale_of_tensor;
  for (int64_t p = blockIdx.x * int64_t{kThreads} + threadIdx.x; p < packs; p += int64_t{gridDim.x} * kThreads) {
    const auto x = reinterpret_cast<const Pack<grad_t, N>*>(grad)[p];
    const int64_t col = (p % packs_per_row) * N;
    Pack<uint8_t, N> bytes;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float v = folded(x.v[i], scale, per_channel, col + i) / scale_of_tensor;
      // The reference's clamp, which keeps a NaN (fminf/fmaxf would not).
      const float clamped = v < -kMaxE5M2 ? -kMaxE5M2 : (v > kMaxE5M2 ? kMaxE5M2 : v);
      bytes.v[i] = c10::Float8_e5m2(clamped).x;
    }
    reinterpret_cast<Pack<uint8_t, N>*>(values)[p] = bytes;
  }
}

// A kTile x kTile block of the operand, read along its rows and written along its columns
// through shared memory (rows padded by 4 bytes: a warp's column reads hit distinct banks).
constexpr int kTile = 64;
constexpr int kTileRowsPerPass = 4;

template <typename operand_t>
__global__ void __launch_bounds__(kTile* kTileRowsPerPass)
    write_transposed_codes(const operand_t* __restrict__ operand, uint8_t* __restrict__ codes_t, int64_t out_features,
                           int64_t in_features, uint8_t plus_one, uint8_t minus_one) {
  __shared__ uint8_t tile[kTile][kTile + 4];
  const int64_t out0 = int64_t{blockIdx.y} * kTile, in0 = int64_t{blockIdx.x} * kTile;
  for (int r = threadIdx.y; r < kTile; r += kTileRowsPerPass) {
    const int64_t o = out0 + r, i = in0 + threadIdx.x;
    uint8_t code = 0;
    if (o < out_features && i < in_features) {
      const float w = static_cast<float>(operand[o * in_features + i]);
      code = w > 0 ? plus_one : (w < 0 ? minus_one : 0);
    }
    tile[r][threadIdx.x] = code;
  }
  __syncthreads();
  for (int r = threadIdx.y; r < kTile; r += kTileRowsPerPass) {
    const int64_t i = in0 + r, o = out0 + threadIdx.x;
    if (i < in_features && o < out_features) codes_t[i * out_features + o] = tile[threadIdx.x][r];
  }
}

int grid_for(int64_t packs) {
  const int64_t wanted = (packs + kThreads - 1) / kThreads;
  const int64_t wave = int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount} * 8;
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, wave)));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> quantize_gradient_rows(const at::Tensor& grad_rows, const at::Tensor& scale) {
  TORCH_INTERNAL_ASSERT(grad_rows.dim() == 2 && grad_rows.is_contiguous() && grad_rows.size(1) % 8 == 0);
  // 16-byte loads need a 16-byte aligned start (a view's offset may break it).
  const at::Tensor grad = reinterpret_cast<uintptr_t>(grad_rows.data_ptr()) % 16 == 0 ? grad_rows : grad_rows.clone();
  const at::Tensor scale32 = scale.to(at::kFloat).contiguous();
  const bool per_channel = scale32.numel() != 1;
  TORCH_INTERNAL_ASSERT(!per_channel || scale32.numel() == grad.size(1));
  const auto options = grad.options();
  at::Tensor absmax_bits = at::zeros({1}, options.dtype(at::kInt));
  at::Tensor values = at::empty(grad.sizes(), options.dtype(at::kFloat8_e5m2));
  at::Tensor tensor_scale = at::empty({1}, options.dtype(at::kFloat));
  if (grad.numel() == 0) return {values, tensor_scale.fill_(kMinGradientAbsMax / kMaxE5M2)};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "quantize_gradient_rows", [&] {
    constexpr int kPack = 16 / sizeof(scalar_t);
    const int64_t packs = grad.numel() / kPack, packs_per_row = grad.size(1) / kPack;
    auto* bits = reinterpret_cast<unsigned int*>(absmax_bits.data_ptr<int>());
    folded_absmax<scalar_t, kPack><<<grid_for(packs), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), scale32.data_ptr<float>(), per_channel, packs, packs_per_row, bits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    write_e5m2<scalar_t, kPack><<<grid_for(packs), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), scale32.data_ptr<float>(), per_channel, packs, packs_per_row, bits,
        reinterpret_cast<uint8_t*>(values.data_ptr()), tensor_scale.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {values, tensor_scale};
}

at::Tensor transposed_fp8_codes(const at::Tensor& operand) {
  TORCH_INTERNAL_ASSERT(operand.dim() == 2 && operand.is_contiguous());
  const int64_t out_features = operand.size(0), in_features = operand.size(1);
  at::Tensor codes_t = at::empty({in_features, out_features}, operand.options().dtype(at::kFloat8_e4m3fn));
  if (codes_t.numel() == 0) return codes_t;
  const dim3 grid((in_features + kTile - 1) / kTile, (out_features + kTile - 1) / kTile);
  TORCH_CHECK(grid.y <= 65535, "bittorch::ternary_linear: too many output features for the FP8 backward (",
              out_features, ")");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, operand.scalar_type(), "transposed_fp8_codes", [&] {
    write_transposed_codes<scalar_t><<<grid, dim3(kTile, kTileRowsPerPass), 0, at::cuda::getCurrentCUDAStream()>>>(
        operand.data_ptr<scalar_t>(), reinterpret_cast<uint8_t*>(codes_t.data_ptr()), out_features, in_features,
        c10::Float8_e4m3fn(1.0F).x, c10::Float8_e4m3fn(-1.0F).x);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return codes_t;
}

}  // namespace bittorch::ops::cuda
