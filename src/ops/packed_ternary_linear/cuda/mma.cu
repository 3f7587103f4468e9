// The mma variant of packed_ternary_linear (variants.h): up to 8 rows of 16-bit or 8-bit
// activations on tensor cores, optionally after a residual add and RMSNorm of the rows
// (add_rms_norm_packed_linear's one kernel).

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

namespace bittorch::ops::cuda {
namespace {

// The residual add and RMSNorm before the product (PackedProduct::norm_residual), or none
// (residual null). vector_loads: x, residual, weight and sum are 16-byte aligned with rows of
// whole 16-byte vectors (features a multiple of 8).
template <typename in_t>
struct RowNorm {
  const in_t* residual = nullptr;
  const in_t* weight = nullptr;
  in_t* sum = nullptr;
  int64_t features = 0;
  float eps = 0;
  bool vector_loads = false;
};

// kWidth consecutive elements, loaded and stored as one access.
template <typename in_t, int kWidth>
struct alignas(sizeof(in_t) * kWidth) ElementPack {
  in_t v[kWidth];
};

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffU, value, offset);
  return value;
}

// The mma kernel's norm prologue: staged[m, :padded] = add_rms_norm's output for rows m of x
// and norm.residual (zero past norm.features), with add_rms_norm's arithmetic (the sum rounded
// to in_t, float32 squares of it, output = in_t(sum * rstd * weight)); block 0 also writes the
// sum. Elements go kWidth at a time (8: 16-byte accesses, so that a decode row is one load per
// thread; else 1). Each thread's first pack of the weight is loaded before the block waits for
// the kernel before it (preload_weight: the weight is a constant).
template <typename in_t, int kThreads, int kWidth>
struct NormPrologue {
  using Pack = ElementPack<in_t, kWidth>;
  Pack first_weight;  // the weight's pack threadIdx.x

  __device__ __forceinline__ void preload_weight(const RowNorm<in_t>& norm) {
    const int64_t packs = norm.features / kWidth;
    if (threadIdx.x < packs) first_weight = reinterpret_cast<const Pack*>(norm.weight)[threadIdx.x];
  }

  __device__ __forceinline__ void stage(const in_t* __restrict__ x, const RowNorm<in_t>& norm, int64_t rows,
                                        int64_t padded, in_t* staged) const {
    __shared__ float warp_squares[kThreads / 32][kMaxMmaVariantRows];
    __shared__ float row_rstd[kMaxMmaVariantRows];
    const int64_t features = norm.features, packs = features / kWidth, pad = padded - features;
    const bool writes_sum = blockIdx.x == 0;
    for (int64_t i = threadIdx.x; i < rows * pad; i += kThreads) {
      staged[i / pad * padded + features + i % pad] = static_cast<in_t>(0.0F);
    }
    for (int64_t m = 0; m < rows; ++m) {
      const auto* x_row = reinterpret_cast<const Pack*>(x + m * features);
      const auto* residual_row = reinterpret_cast<const Pack*>(norm.residual + m * features);
      float squares = 0.0F;
      for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
        const Pack a = x_row[p], b = residual_row[p];
        Pack sum;
#pragma unroll
        for (int j = 0; j < kWidth; ++j) {
          sum.v[j] = static_cast<in_t>(static_cast<float>(a.v[j]) + static_cast<float>(b.v[j]));
          squares += static_cast<float>(sum.v[j]) * static_cast<float>(sum.v[j]);
        }
        reinterpret_cast<Pack*>(staged + m * padded)[p] = sum;
        if (writes_sum) reinterpret_cast<Pack*>(norm.sum + m * features)[p] = sum;
      }
      squares = warp_sum(squares);
      if (threadIdx.x % 32 == 0) warp_squares[threadIdx.x / 32][m] = squares;
    }
    __syncthreads();
    if (threadIdx.x < rows) {
      float total = 0.0F;
#pragma unroll
      for (int w = 0; w < kThreads / 32; ++w) total += warp_squares[w][threadIdx.x];
      row_rstd[threadIdx.x] = 1.0F / sqrtf(total / static_cast<float>(features) + norm.eps);
    }
    __syncthreads();
    for (int64_t m = 0; m < rows; ++m) {
      const float r = row_rstd[m];
      auto* row = reinterpret_cast<Pack*>(staged + m * padded);
      for (int64_t p = threadIdx.x; p < packs; p += kThreads) {  // each thread rewrites what it wrote
        const Pack w = p == threadIdx.x ? first_weight : reinterpret_cast<const Pack*>(norm.weight)[p];
        Pack out = row[p];
#pragma unroll
        for (int j = 0; j < kWidth; ++j) {
          out.v[j] = static_cast<in_t>(static_cast<float>(out.v[j]) * r * static_cast<float>(w.v[j]));
        }
        row[p] = out;
      }
    }
    __syncthreads();
  }
};

// Up to 8 rows: block = one mma tile of output features, warps interleaved over the chunks of K.
// At most 96 registers for one tile per warp: five blocks per multiprocessor (100 gives four).
// The block's codes are constants of a decode step: their loads start before the wait for the
// kernel before (whose output x is). kNormed: x is the rows before add_rms_norm, whose
// output the block stages in shared memory (dynamic, rows x words * 16 elements) and multiplies.
template <typename in_t, typename out_t, int kWarps, int kStages, int kTiles, bool kNormed>
__global__ void __launch_bounds__(kWarps * 32, kTiles == 1 ? 5 : 4)
    packed_mma_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, const uint32_t* __restrict__ packed,
                      int64_t words, int64_t out_features, bool vector_loads, const float* __restrict__ scale,
                      bool per_channel, const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                      bool squared_relu, out_t* __restrict__ out, RowNorm<in_t> norm) {
  using Product = WarpProduct<in_t, 1, kStages, kTiles, kNormed>;
  __shared__ float partial[kWarps][kTiles * 4][32];
  extern __shared__ uint4 normed_rows[];  // kNormed: 16-byte aligned, as the product's loads need
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n0 = int64_t{blockIdx.x} * Product::kFeatures, chunks = (words + kWordsPerChunk - 1) / kWordsPerChunk;
  const int64_t block_features = out_features - n0 < Product::kFeatures ? out_features - n0 : Product::kFeatures;
  // Before the wait: the codes of each warp's first stage on their way to registers (all of
  // them at a decode step's widths), the block's codes to L2 where there are more.
  Product product(kNormed ? reinterpret_cast<const in_t*>(normed_rows) : x, x_stride, rows, 0, packed, words,
                  out_features, n0);
  product.load_stage(warp, chunks, kWarps, words, vector_loads);
  if (chunks > kWarps * kStages) prefetch_to_l2(packed + n0 * words, block_features * words * 4);
  if constexpr (kNormed) {
    auto* staged = reinterpret_cast<in_t*>(normed_rows);
    if (norm.vector_loads) {
      NormPrologue<in_t, kWarps * 32, 16 / sizeof(in_t)> prologue;
      prologue.preload_weight(norm);
      wait_for_prior_grid_and_allow_next();
      prologue.stage(x, norm, rows, x_stride, staged);
    } else {
      NormPrologue<in_t, kWarps * 32, 1> prologue;
      prologue.preload_weight(norm);
      wait_for_prior_grid_and_allow_next();
      prologue.stage(x, norm, rows, x_stride, staged);
    }
  } else {
    wait_for_prior_grid_and_allow_next();
  }
  product.run(warp, chunks, kWarps, words, vector_loads, nullptr, /*first_stage_loaded=*/true);
  product.remove_offset();
#pragma unroll
  for (int r = 0; r < kTiles; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][4 * r + i][lane] = product.acc[r][0][i];
  }
  __syncthreads();
  for (int index = threadIdx.x; index < kTiles * 4 * 32; index += kWarps * 32) {
    const int r = index / 128, i = index / 32 % 4, owner = index % 32;
    const int feature = Product::feature_of(16 * r + owner / 4 + 8 * (i / 2));
    const int64_t n = n0 + feature, m = 2 * (owner % 4) + i % 2;
    if (feature < 0 || n >= out_features || m >= rows) continue;
    float sum = 0.0F;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][4 * r + i][owner];
    out[m * out_features + n] = scaled_output(sum, m, n, row_scale, scale, per_channel, bias, squared_relu);
  }
}

template <typename in_t, typename out_t, int kTiles, int kStages>
void small_batch_product(const PackedProduct& p, int64_t rows, const float* row_scale, const out_t* bias) {
  const int64_t out_features = p.packed.size(0), words = p.packed.size(1);
  constexpr int kWarps = 4;
  constexpr int kFeatures = tile_features<in_t, kTiles>();
  const dim3 grid(static_cast<unsigned>((out_features + kFeatures - 1) / kFeatures));
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto* x = reinterpret_cast<const in_t*>(p.x.data_ptr());
  const auto* codes = reinterpret_cast<const uint32_t*>(p.packed.data_ptr<int32_t>());
  const float* scale = p.scale.data_ptr<float>();
  auto* out = p.out.data_ptr<out_t>();
  if (!p.norm_residual.defined()) {
    launch_dependent(packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles, false>, grid, dim3(kWarps * 32), 0, stream,
                     x, p.x.size(1), rows, codes, words, out_features, words % 4 == 0, scale, p.scale.size(0) > 1,
                     row_scale, bias, p.squared_relu, out, RowNorm<in_t>{});
    return;
  }
  if constexpr (sizeof(in_t) == 2) {
    RowNorm<in_t> norm;
    norm.residual = reinterpret_cast<const in_t*>(p.norm_residual.data_ptr());
    norm.weight = reinterpret_cast<const in_t*>(p.norm_weight.data_ptr());
    norm.sum = reinterpret_cast<in_t*>(p.norm_sum.data_ptr());
    norm.features = p.x.size(1);
    norm.eps = static_cast<float>(p.norm_eps);
    const auto aligned = [](const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; };
    norm.vector_loads = norm.features % 8 == 0 && aligned(p.x) && aligned(p.norm_residual) && aligned(p.norm_weight) &&
                        aligned(p.norm_sum);
    // The staged rows are padded to whole words, as the product reads them.
    const int64_t padded = words * kWordsPerChunk;
    launch_dependent(packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles, true>, grid, dim3(kWarps * 32),
                     static_cast<size_t>(rows * padded * sizeof(in_t)), stream, x, padded, rows, codes, words,
                     out_features, words % 4 == 0, scale, p.scale.size(0) > 1, row_scale, bias, p.squared_relu, out,
                     norm);
  } else {
    TORCH_CHECK(false, "bittorch::packed_ternary_linear: the norm prologue takes 16-bit activations");
  }
}

}  // namespace

void mma_product(const PackedProduct& p) {
  const int64_t rows = p.x.size(0), out_features = p.packed.size(0);
  TORCH_CHECK(rows <= kMaxMmaVariantRows, "bittorch::packed_ternary_linear: kernel \"mma\" takes at most ",
              kMaxMmaVariantRows, " rows, not ", rows);
  TORCH_CHECK(
      !p.norm_residual.defined() ||
          rows * p.packed.size(1) * kWordsPerChunk * static_cast<int64_t>(p.x.element_size()) <= kMaxNormedRowsBytes,
      "bittorch::packed_ternary_linear: the norm prologue's rows exceed ", kMaxNormedRowsBytes, " bytes");
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  dispatch_packed_product(p, "bittorch_packed_mma", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    // Two tiles per warp share each input fragment, but halve the blocks: only where there
    // are still about six blocks per multiprocessor.
    const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    if (out_features >= 6 * multiprocessors * tile_features<in_t, 2>()) {
      small_batch_product<in_t, out_t, 2, 2>(p, rows, row_scale, bias);
    } else {
      small_batch_product<in_t, out_t, 1, 3>(p, rows, row_scale, bias);
    }
  });
}

}  // namespace bittorch::ops::cuda
