#include "ops/cuda/ternarize_kernels.cuh"

#include "ops/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>

#include <cub/block/block_reduce.cuh>

namespace bittorch::ops::cuda {
namespace {

constexpr int kReduceThreads = 256;

struct MaxOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

// Per row (the global scale's first step): max|w| (Max) or sum|w| in double (AbsMean; double so that the mean rounds to the
// same float as the CPU reference's double mean). One block per row, fixed thread-to-element
// assignment and a fixed reduction tree: the same bits on every run.
using BlockReduce = cub::BlockReduce<double, kReduceThreads>;

// max|w| or sum|w| of one row by the whole block; the result is valid in thread 0.
template <typename scalar_t, bool kMax>
__device__ double block_row_statistic(const scalar_t* __restrict__ row, int64_t cols,
                                      typename BlockReduce::TempStorage& storage) {
  double acc = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += kReduceThreads) {
    const double v = fabs(static_cast<double>(row[c]));
    acc = kMax ? fmax(acc, v) : acc + v;
  }
  return kMax ? BlockReduce(storage).Reduce(acc, MaxOp()) : BlockReduce(storage).Sum(acc);
}

template <typename scalar_t, bool kMax>
__global__ void row_abs_statistic(const scalar_t* __restrict__ weight, int64_t cols,
                                  double* __restrict__ row_statistic) {
  __shared__ typename BlockReduce::TempStorage storage;
  const double total = block_row_statistic<scalar_t, kMax>(weight + blockIdx.x * cols, cols, storage);
  if (threadIdx.x == 0) row_statistic[blockIdx.x] = total;
}

// The global scale from the row statistics, in one block with a fixed reduction order.
// `count` is the number of weights.
template <typename acc_t, bool kMax>
__global__ void finish_scale(const double* __restrict__ row_statistic, int64_t rows,
                             double count, acc_t* __restrict__ scale) {
  __shared__ typename BlockReduce::TempStorage storage;
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kReduceThreads) {
    acc = kMax ? fmax(acc, row_statistic[r]) : acc + row_statistic[r];
  }
  const double total = kMax ? BlockReduce(storage).Reduce(acc, MaxOp())
                            : BlockReduce(storage).Sum(acc);
  if (threadIdx.x == 0) {
    const double s = kMax ? total : total / count;
    scale[0] = max(static_cast<acc_t>(s), static_cast<acc_t>(1e-8));
  }
}

// The code of one weight with the reference's arithmetic in acc_t (float for float16,
// bfloat16 and float32 weights): Max compares |w| with scale * threshold_factor, AbsMean
// rounds w / scale half to even. With kDequantize, code * scale.
template <typename acc_t, bool kMax, bool kDequantize>
__device__ __forceinline__ acc_t quantize_one(acc_t w, acc_t s, acc_t threshold_factor) {
  acc_t code;
  if (kMax) {
    code = fabs(w) > s * threshold_factor ? (w > 0 ? acc_t(1) : acc_t(-1)) : acc_t(0);
  } else {
    code = fmin(fmax(nearbyint(w / s), acc_t(-1)), acc_t(1));
  }
  return kDequantize ? code * s : code;
}

// Per channel, in one pass: each block reduces its row, then writes the row's codes while
// the row is still in cache.
template <typename weight_t, typename acc_t, typename out_t, bool kMax, bool kDequantize>
__global__ void quantize_rows(const weight_t* __restrict__ weight, int64_t cols,
                              acc_t threshold_factor, acc_t* __restrict__ scale,
                              out_t* __restrict__ codes) {
  __shared__ typename BlockReduce::TempStorage storage;
  __shared__ acc_t row_scale;
  const weight_t* row = weight + blockIdx.x * cols;
  const double total = block_row_statistic<weight_t, kMax>(row, cols, storage);
  if (threadIdx.x == 0) {
    const double s = kMax ? total : total / static_cast<double>(cols);
    row_scale = max(static_cast<acc_t>(s), static_cast<acc_t>(1e-8));
    scale[blockIdx.x] = row_scale;
  }
  __syncthreads();
  const acc_t s = row_scale;
  out_t* out = codes + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += kReduceThreads) {
    out[c] = static_cast<out_t>(
        quantize_one<acc_t, kMax, kDequantize>(static_cast<acc_t>(row[c]), s, threshold_factor));
  }
}

// Global scale: the codes of every weight against scale[0].
template <typename weight_t, typename acc_t, typename out_t, bool kMax, bool kDequantize>
__global__ void write_codes_global(const weight_t* __restrict__ weight,
                                   const acc_t* __restrict__ scale, int64_t numel,
                                   acc_t threshold_factor, out_t* __restrict__ codes) {
  const acc_t s = scale[0];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < numel;
       i += int64_t{gridDim.x} * blockDim.x) {
    codes[i] = static_cast<out_t>(
        quantize_one<acc_t, kMax, kDequantize>(static_cast<acc_t>(weight[i]), s, threshold_factor));
  }
}

template <typename weight_t, bool kMax, bool kDequantize>
void launch(const at::Tensor& weight, double threshold_factor, bool per_channel,
            at::Tensor& codes, at::Tensor& scale) {
  using acc_t = at::opmath_type<weight_t>;
  const int64_t rows = weight.size(0), cols = weight.size(1), numel = weight.numel();
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto* w = weight.data_ptr<weight_t>();
  const auto threshold = static_cast<acc_t>(threshold_factor);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codes.scalar_type(), "ternarize_cuda_codes", [&] {
    auto* out = codes.data_ptr<scalar_t>();
    if (per_channel) {
      quantize_rows<weight_t, acc_t, scalar_t, kMax, kDequantize><<<rows, kReduceThreads, 0, stream>>>(
          w, cols, threshold, scale.data_ptr<acc_t>(), out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    auto row_statistic = at::empty({rows}, weight.options().dtype(at::kDouble));
    row_abs_statistic<weight_t, kMax><<<rows, kReduceThreads, 0, stream>>>(
        w, cols, row_statistic.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finish_scale<acc_t, kMax><<<1, kReduceThreads, 0, stream>>>(
        row_statistic.data_ptr<double>(), rows, static_cast<double>(numel), scale.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>(
        (numel + threads - 1) / threads,
        at::cuda::getCurrentDeviceProperties()->multiProcessorCount * int64_t{16});
    write_codes_global<weight_t, acc_t, scalar_t, kMax, kDequantize><<<blocks, threads, 0, stream>>>(
        w, scale.data_ptr<acc_t>(), numel, threshold, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight_in, double threshold_factor,
                                             bool per_channel, quant::ScaleMode mode,
                                             at::ScalarType codes_dtype, bool dequantize) {
  const c10::cuda::CUDAGuard device_guard(weight_in.device());
  const at::Tensor weight = weight_in.contiguous();
  auto scale = at::empty({per_channel ? weight.size(0) : 1},
                         weight.options().dtype(scale_dtype(weight.scalar_type())));
  auto codes = at::empty(weight.sizes(), weight.options().dtype(codes_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "ternarize_cuda", [&] {
    const bool max_mode = mode == quant::ScaleMode::Max;
    if (max_mode && dequantize) launch<scalar_t, true, true>(weight, threshold_factor, per_channel, codes, scale);
    if (max_mode && !dequantize) launch<scalar_t, true, false>(weight, threshold_factor, per_channel, codes, scale);
    if (!max_mode && dequantize) launch<scalar_t, false, true>(weight, threshold_factor, per_channel, codes, scale);
    if (!max_mode && !dequantize) launch<scalar_t, false, false>(weight, threshold_factor, per_channel, codes, scale);
  });
  return {codes, scale};
}

}  // namespace bittorch::ops::cuda
