#include "ops/ternarize/ternarize_kernels.cuh"

#include "ops/common/checks.h"
#include "ops/common/cuda/row_quantize.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Float8_e4m3fn.h>

namespace bittorch::ops::cuda {
namespace {

// Writes, for each weight, its code in up to two forms: `operand` (code * scale, or the code
// itself when operand_is_code) and `codes8` (the code's byte in an 8-bit format). The code
// uses the reference's arithmetic in acc_t (float for float16, bfloat16 and float32
// weights): Max compares |w| with scale * threshold_factor, AbsMean rounds w / scale half to
// even.
template <typename weight_t, typename operand_t>
struct TernaryWriter {
  using acc_t = at::opmath_type<weight_t>;

  bool max_mode;
  acc_t threshold_factor;
  operand_t* operand;  // may be null
  bool operand_is_code;
  uint8_t* codes8;  // may be null
  // The 8-bit encodings of -1, 0 and +1 (named, not an array: a runtime index into a kernel
  // argument would go through local memory).
  uint8_t byte_minus_one, byte_zero, byte_plus_one;

  __device__ __forceinline__ int code_of(acc_t w, acc_t s) const {
    if (max_mode) return fabs(w) > s * threshold_factor ? (w > 0 ? 1 : -1) : 0;
    return static_cast<int>(fmin(fmax(nearbyint(w / s), acc_t(-1)), acc_t(1)));
  }

  template <int N>
  __device__ __forceinline__ void write(int64_t index, const Pack<weight_t, N>& w, acc_t s) const {
    int codes[N];
#pragma unroll
    for (int i = 0; i < N; ++i) codes[i] = code_of(static_cast<acc_t>(w.v[i]), s);
    if (operand != nullptr) {
      Pack<operand_t, N> values;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        values.v[i] = static_cast<operand_t>(operand_is_code ? acc_t(codes[i]) : acc_t(codes[i]) * s);
      }
      *reinterpret_cast<Pack<operand_t, N>*>(operand + index) = values;
    }
    if (codes8 != nullptr) {
      Pack<uint8_t, N> bytes;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        bytes.v[i] = codes[i] > 0 ? byte_plus_one : (codes[i] < 0 ? byte_minus_one : byte_zero);
      }
      *reinterpret_cast<Pack<uint8_t, N>*>(codes8 + index) = bytes;
    }
  }
};

// Per channel: the row's scale from its statistic, floored at 1e-8 like the reference
// (which takes the mean in double).
template <typename weight_t, typename operand_t>
struct RowTernaryQuantizer {
  using scale_t = at::opmath_type<weight_t>;
  bool max_statistic;
  scale_t* scale;
  TernaryWriter<weight_t, operand_t> writer;

  __device__ scale_t finish_row(int64_t row, double total, int64_t cols) const {
    const double s = max_statistic ? total : total / static_cast<double>(cols);
    const scale_t floored = floor_keeping_nan(static_cast<scale_t>(s), static_cast<scale_t>(1e-8));
    scale[row] = floored;
    return floored;
  }
  template <int N>
  __device__ void write(int64_t index, const Pack<weight_t, N>& w, scale_t s) const {
    writer.write(index, w, s);
  }
};

// The global scale's first step: each row's statistic, nothing written per element.
template <typename weight_t>
struct RowStatistic {
  using scale_t = double;
  bool max_statistic;
  double* row_statistic;

  __device__ double finish_row(int64_t row, double total, int64_t /*cols*/) const {
    row_statistic[row] = total;
    return total;
  }
  template <int N>
  __device__ void write(int64_t, const Pack<weight_t, N>&, double) const {}
};

// The global scale from the row statistics, in one block with a fixed reduction order.
// `count` is the number of weights.
template <typename acc_t>
__global__ void finish_global_scale(const double* __restrict__ row_statistic, int64_t rows, double count,
                                    bool max_statistic, acc_t* __restrict__ scale) {
  __shared__ typename RowReduce::TempStorage storage;
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kRowThreads) {
    acc = max_statistic ? max_keeping_nan(acc, row_statistic[r]) : acc + row_statistic[r];
  }
  const double total = max_statistic ? RowReduce(storage).Reduce(acc, MaxOp()) : RowReduce(storage).Sum(acc);
  if (threadIdx.x == 0) {
    const double s = max_statistic ? total : total / count;
    scale[0] = floor_keeping_nan(static_cast<acc_t>(s), static_cast<acc_t>(1e-8));
  }
}

// Global scale: every weight's outputs against scale[0], in packs of N.
template <typename weight_t, typename operand_t, int N>
__global__ void write_global(const weight_t* __restrict__ weight, int64_t num_packs,
                             const at::opmath_type<weight_t>* __restrict__ scale,
                             TernaryWriter<weight_t, operand_t> writer) {
  const auto s = scale[0];
  const auto* packs = reinterpret_cast<const Pack<weight_t, N>*>(weight);
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < num_packs;
       p += int64_t{gridDim.x} * blockDim.x) {
    writer.write(p * N, packs[p], s);
  }
}

template <typename weight_t, typename operand_t, int N>
void launch_write_global(const at::Tensor& weight, const at::Tensor& scale,
                         const TernaryWriter<weight_t, operand_t>& writer) {
  const int threads = 256;
  const int64_t num_packs = weight.numel() / N;
  const int64_t blocks = std::min<int64_t>((num_packs + threads - 1) / threads,
                                           at::cuda::getCurrentDeviceProperties()->multiProcessorCount * int64_t{16});
  write_global<weight_t, operand_t, N><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      weight.data_ptr<weight_t>(), num_packs, scale.data_ptr<at::opmath_type<weight_t>>(), writer);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The bytes of -1, 0, +1 in an 8-bit codes dtype.
template <typename Writer>
void set_code_bytes(at::ScalarType dtype, Writer& writer) {
  const bool int8 = dtype == at::kChar;
  writer.byte_minus_one = int8 ? static_cast<uint8_t>(int8_t{-1}) : c10::Float8_e4m3fn(-1.0F).x;
  writer.byte_zero = int8 ? 0 : c10::Float8_e4m3fn(0.0F).x;
  writer.byte_plus_one = int8 ? 1 : c10::Float8_e4m3fn(1.0F).x;
}

template <typename weight_t, typename operand_t>
void launch(const at::Tensor& weight, double threshold_factor, bool per_channel, bool max_mode,
            TernarizedOnDevice& out) {
  using acc_t = at::opmath_type<weight_t>;
  const int64_t rows = weight.size(0), cols = weight.size(1);
  TernaryWriter<weight_t, operand_t> writer{};
  writer.max_mode = max_mode;
  writer.threshold_factor = static_cast<acc_t>(threshold_factor);
  // The weight-dtype codes of the ternarize op are written as an operand of code alone.
  const bool codes_in_weight_dtype = out.codes.defined() && out.codes.scalar_type() == weight.scalar_type();
  const at::Tensor& wide = codes_in_weight_dtype ? out.codes : out.operand;
  writer.operand = wide.defined() ? wide.data_ptr<operand_t>() : nullptr;
  writer.operand_is_code = codes_in_weight_dtype;
  if (out.codes.defined() && !codes_in_weight_dtype) {
    writer.codes8 = static_cast<uint8_t*>(out.codes.data_ptr());
    set_code_bytes(out.codes.scalar_type(), writer);
  }
  const auto* w = weight.data_ptr<weight_t>();
  if (per_channel) {
    quantize_rows(w, rows, cols,
                  RowTernaryQuantizer<weight_t, operand_t>{max_mode, out.scale.data_ptr<acc_t>(), writer});
    return;
  }
  auto row_statistic = at::empty({rows}, weight.options().dtype(at::kDouble));
  quantize_rows(w, rows, cols, RowStatistic<weight_t>{max_mode, row_statistic.data_ptr<double>()});
  finish_global_scale<acc_t><<<1, kRowThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      row_statistic.data_ptr<double>(), rows, static_cast<double>(weight.numel()), max_mode,
      out.scale.data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (packs_fit(w, cols)) {
    launch_write_global<weight_t, operand_t, pack_size<weight_t>()>(weight, out.scale, writer);
  } else {
    launch_write_global<weight_t, operand_t, 1>(weight, out.scale, writer);
  }
}

}  // namespace

TernarizedOnDevice ternarize_on_device(const at::Tensor& weight_in, double threshold_factor, bool per_channel,
                                       quant::ScaleMode mode, const TernarizeTargets& targets) {
  TORCH_INTERNAL_ASSERT(targets.codes_dtype || targets.operand_dtype);
  const c10::cuda::CUDAGuard device_guard(weight_in.device());
  const at::Tensor weight = weight_in.contiguous();
  const auto weight_dtype = weight.scalar_type();
  TernarizedOnDevice out;
  out.scale = at::empty({per_channel ? weight.size(0) : 1}, weight.options().dtype(scale_dtype(weight_dtype)));
  if (targets.codes_dtype) {
    out.codes = at::empty(weight.sizes(), weight.options().dtype(*targets.codes_dtype));
  }
  if (targets.operand_dtype) {
    out.operand = at::empty(weight.sizes(), weight.options().dtype(*targets.operand_dtype));
  }
  // The wide output's dtype: the operand's, else the weight's (codes in its own dtype, or
  // only 8-bit codes, written through a null operand of the weight's type).
  const auto wide_dtype = targets.operand_dtype.value_or(weight_dtype);
  TORCH_INTERNAL_ASSERT(!targets.codes_dtype || !targets.operand_dtype || *targets.codes_dtype != weight_dtype);
  const bool max_mode = mode == quant::ScaleMode::Max;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight_dtype, "bittorch_ternarize_cuda", [&] {
    using weight_t = scalar_t;
    if (wide_dtype == weight_dtype) {
      launch<weight_t, weight_t>(weight, threshold_factor, per_channel, max_mode, out);
      return;
    }
    // Narrower operands exist only for float32 master weights (mixed precision).
    TORCH_INTERNAL_ASSERT(weight_dtype == at::kFloat);
    if constexpr (std::is_same_v<weight_t, float>) {
      if (wide_dtype == at::kHalf) {
        launch<float, at::Half>(weight, threshold_factor, per_channel, max_mode, out);
      } else {
        TORCH_INTERNAL_ASSERT(wide_dtype == at::kBFloat16);
        launch<float, at::BFloat16>(weight, threshold_factor, per_channel, max_mode, out);
      }
    }
  });
  return out;
}

}  // namespace bittorch::ops::cuda
