#pragma once

// The skeleton both quantization kernels share (ternary weights, 8-bit activations): one
// block per row reads the row once with 16-byte loads, keeping up to kCachedPacks packs per
// thread in registers, reduces a statistic of |x| (max or sum, in double, in a fixed order:
// deterministic), turns it into the row's scale, then writes the row's outputs from the
// registers (longer rows re-read their tail, from L2). Few registers per thread, so that
// enough blocks share an SM to keep HBM busy. Under a max statistic, short rows (activations
// of up to 1,024 bfloat16 features) and the rows of large batches go one warp per row
// instead: a block per row would leave most of a short row's threads idle, and a block takes
// its rows one wave of 8 per SM at a time (load, reduce, write), where warps keep 64 rows per
// SM in flight.
//
// A Quantizer provides:
//   bool max_statistic;                                  max|x| (true) or sum|x|
//   scale_t finish_row(int64_t row, double total, int64_t cols);   stores and returns the scale
//   template <int N> void write(int64_t index, const Pack<in_t, N>& x, scale_t scale);
// and may provide, with `static constexpr bool prepares_input = true;`,
//   template <int N> Pack<in_t, N> prepare(const Pack<in_t, N>& x);
// the row's values computed from the input as it is read (an activation applied on the way):
// the statistic and write() then see prepare(x), not x.

#include "ops/common/cuda/dependent_launch.cuh"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include <cub/block/block_reduce.cuh>

#include <cstdint>
#include <type_traits>

namespace bittorch::ops::cuda {

/// N consecutive elements, moved as one aligned load or store.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

constexpr int kRowThreads = 256;
constexpr int kCachedPacks = 4;  // 4 x 16 bytes per thread: 4,096 float32 columns per row
constexpr int kMinRowBlocksPerSm = 4;

using RowReduce = cub::BlockReduce<double, kRowThreads>;

// max that keeps a NaN, as the CPU reference's amax does (fmax drops it): a row holding NaN
// gets a NaN statistic, and so a NaN scale and NaN outputs, never finite ones.
template <typename T>
__device__ __forceinline__ T max_keeping_nan(T a, T b) {
  return (a > b || isnan(a)) ? a : b;
}

/// `value` floored at `floor`, a NaN kept (as the reference's clamp_min).
template <typename T>
__device__ __forceinline__ T floor_keeping_nan(T value, T floor) {
  return isnan(value) || value > floor ? value : floor;
}

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return max_keeping_nan(a, b);
  }
};

// Whether a Quantizer declares prepares_input.
template <typename Quantizer, typename = void>
struct PreparesInput : std::false_type {};
template <typename Quantizer>
struct PreparesInput<Quantizer, std::void_t<decltype(Quantizer::prepares_input)>>
    : std::bool_constant<Quantizer::prepares_input> {};

/// The row's values from an input pack: the Quantizer's prepare() if it has one, else the pack
/// itself (a reference: no copy, so the other quantizers' code is what it was without this).
template <typename Quantizer, typename P>
__device__ __forceinline__ decltype(auto) prepared(const Quantizer& quantizer, const P& pack) {
  if constexpr (PreparesInput<Quantizer>::value) {
    return quantizer.prepare(pack);
  } else {
    return (pack);  // decltype(auto) of a parenthesized name: const P&
  }
}

// A maximum is taken in the input's own precision (float32 for narrower types: exact, and one
// conversion to double per pack instead of one per element), a sum in double.
template <typename in_t, int N>
__device__ __forceinline__ double accumulate(double acc, const Pack<in_t, N>& pack, bool max_statistic) {
  if (max_statistic) {
    using max_t = std::conditional_t<std::is_same_v<in_t, double>, double, float>;
    max_t pack_max = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) pack_max = max_keeping_nan(pack_max, fabs(static_cast<max_t>(pack.v[i])));
    return max_keeping_nan(acc, static_cast<double>(pack_max));
  }
#pragma unroll
  for (int i = 0; i < N; ++i) acc += fabs(static_cast<double>(pack.v[i]));
  return acc;
}

/// One thread's packs of a row: first, first + kStride, ... (kStride threads share the row).
/// read() keeps the first kCachedPacks (prepared) in registers and returns the statistic of
/// all of them; write() writes the outputs of all of them, reading (and preparing) the rest
/// again.
template <int kStride, typename in_t, int N>
struct RowShare {
  const Pack<in_t, N>* packs;
  int64_t num_packs, first;
  Pack<in_t, N> cache[kCachedPacks];  // filled by read()

  __device__ __forceinline__ RowShare(const in_t* row, int64_t cols, int64_t first_pack)
      : packs(reinterpret_cast<const Pack<in_t, N>*>(row)), num_packs(cols / N), first(first_pack) {}

  template <typename Quantizer>
  __device__ __forceinline__ double read(const Quantizer& quantizer) {
    double acc = 0.0;
#pragma unroll
    for (int j = 0; j < kCachedPacks; ++j) {
      const int64_t p = first + int64_t{j} * kStride;
      if (p < num_packs) {
        cache[j] = prepared(quantizer, packs[p]);
        acc = accumulate(acc, cache[j], quantizer.max_statistic);
      }
    }
    for (int64_t p = first + int64_t{kCachedPacks} * kStride; p < num_packs; p += kStride) {
      acc = accumulate(acc, prepared(quantizer, packs[p]), quantizer.max_statistic);
    }
    return acc;
  }

  template <typename Quantizer>
  __device__ __forceinline__ void write(const Quantizer& quantizer, int64_t row_start,
                                        typename Quantizer::scale_t scale) const {
#pragma unroll
    for (int j = 0; j < kCachedPacks; ++j) {
      const int64_t p = first + int64_t{j} * kStride;
      if (p < num_packs) quantizer.write(row_start + p * N, cache[j], scale);
    }
    for (int64_t p = first + int64_t{kCachedPacks} * kStride; p < num_packs; p += kStride) {
      quantizer.write(row_start + p * N, prepared(quantizer, packs[p]), scale);
    }
  }
};

template <typename in_t, int N, typename Quantizer>
__global__ void __launch_bounds__(kRowThreads, kMinRowBlocksPerSm)
    quantize_rows_kernel(const in_t* __restrict__ input, int64_t cols, Quantizer quantizer) {
  wait_for_prior_grid_and_allow_next();
  __shared__ typename RowReduce::TempStorage storage;
  __shared__ typename Quantizer::scale_t row_scale;
  const int64_t row = blockIdx.x;
  RowShare<kRowThreads, in_t, N> share(input + row * cols, cols, threadIdx.x);
  const double acc = share.read(quantizer);
  const double total = quantizer.max_statistic ? RowReduce(storage).Reduce(acc, MaxOp()) : RowReduce(storage).Sum(acc);
  if (threadIdx.x == 0) row_scale = quantizer.finish_row(row, total, cols);
  __syncthreads();
  share.write(quantizer, row * cols, row_scale);
}

constexpr int kWarpRowsPerBlock = kRowThreads / 32;
constexpr int64_t kWarpRowsFromRows = 4096;  // longer rows too go a warp per row from this many

/// quantize_rows_kernel with a warp per row: the statistic is reduced across the warp's lanes
/// (a butterfly: every lane ends with the same value), lane 0 finishes the row, and the scale
/// reaches the other lanes by shuffle.
template <typename in_t, int N, typename Quantizer>
__global__ void __launch_bounds__(kRowThreads)
    quantize_warp_rows_kernel(const in_t* __restrict__ input, int64_t rows, int64_t cols, Quantizer quantizer) {
  wait_for_prior_grid_and_allow_next();
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t row = int64_t{blockIdx.x} * kWarpRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;  // a whole warp: the shuffles below involve no lane that left
  RowShare<32, in_t, N> share(input + row * cols, cols, lane);
  double acc = share.read(quantizer);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const double other = __shfl_xor_sync(0xffffffffU, acc, offset);
    acc = quantizer.max_statistic ? max_keeping_nan(acc, other) : acc + other;
  }
  typename Quantizer::scale_t scale{};
  if (lane == 0) scale = quantizer.finish_row(row, acc, cols);
  share.write(quantizer, row * cols, __shfl_sync(0xffffffffU, scale, 0));
}

/// Elements per 16-byte pack of in_t.
template <typename in_t>
constexpr int pack_size() {
  return static_cast<int>(16 / sizeof(in_t));
}

/// Whether rows of `cols` elements starting at `data` can be read in whole packs (and
/// outputs of at most in_t's width written in packs of as many elements).
template <typename in_t>
bool packs_fit(const in_t* data, int64_t cols) {
  return cols % pack_size<in_t>() == 0 && reinterpret_cast<std::uintptr_t>(data) % 16 == 0;
}

/// Runs `quantizer` over `rows` rows of `cols` contiguous elements on the current stream.
template <typename in_t, typename Quantizer>
void quantize_rows(const in_t* input, int64_t rows, int64_t cols, const Quantizer& quantizer) {
  if (rows == 0) return;
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "bittorch: more rows (", rows,
              ") than one CUDA grid can hold");
  const auto stream = at::cuda::getCurrentCUDAStream();
  const bool packed = packs_fit(input, cols);
  // A maximum is the same in any order, so the warp's reduction gives the block's bits.
  if (packed && quantizer.max_statistic &&
      (cols / pack_size<in_t>() <= 32 * kCachedPacks || rows >= kWarpRowsFromRows)) {
    launch_dependent(quantize_warp_rows_kernel<in_t, pack_size<in_t>(), Quantizer>,
                     dim3(static_cast<unsigned>((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock)), dim3(kRowThreads),
                     0, stream, input, rows, cols, quantizer);
    return;
  }
  const auto kernel =
      packed ? quantize_rows_kernel<in_t, pack_size<in_t>(), Quantizer> : quantize_rows_kernel<in_t, 1, Quantizer>;
  launch_dependent(kernel, dim3(static_cast<unsigned>(rows)), dim3(kRowThreads), 0, stream, input, cols, quantizer);
}

}  // namespace bittorch::ops::cuda
