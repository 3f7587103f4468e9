// The mma and mma_prefetch variants of packed_ternary_linear (variants.h): up to 8 (16) rows
// of 16-bit or 8-bit activations on tensor cores.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

namespace bittorch::ops::cuda {
namespace {

// Up to 8 rows (kNTiles = 1), or 16 (2): block = one mma tile of output features, warps
// interleaved over the chunks of K, each lane reading its rows' inputs (L1). At most 96
// registers for one tile and n-tile per warp: five blocks per multiprocessor (100 gives four).
// kPrefetch: each group's code loads issued before the previous group's products
// (WarpProduct::run<true>).
template <typename in_t, typename out_t, int kWarps, int kStages, int kTiles, int kNTiles, bool kPrefetch>
__global__ void __launch_bounds__(kWarps * 32, kTiles* kNTiles == 1 ? 5 : 4)
    packed_mma_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, const uint32_t* __restrict__ packed,
                      int64_t words, int64_t out_features, bool vector_loads, const float* __restrict__ scale,
                      bool per_channel, const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                      bool squared_relu, out_t* __restrict__ out) {
  wait_for_prior_grid_and_allow_next();
  using Product = WarpProduct<in_t, kNTiles, kStages, kTiles, /*kStaged=*/false>;
  constexpr int kSums = kTiles * kNTiles * 4;  // accumulators per lane
  __shared__ float partial[kWarps][kSums][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n0 = int64_t{blockIdx.x} * Product::kFeatures;
  Product product(x, x_stride, rows, 0, packed, words, out_features, n0);
  product.template run<kPrefetch>(warp, (words + kWordsPerChunk - 1) / kWordsPerChunk, kWarps, words, vector_loads);
  product.remove_offset();
#pragma unroll
  for (int r = 0; r < kTiles; ++r) {
#pragma unroll
    for (int t = 0; t < kNTiles; ++t) {
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[warp][(r * kNTiles + t) * 4 + i][lane] = product.acc[r][t][i];
    }
  }
  __syncthreads();
  for (int index = threadIdx.x; index < kSums * 32; index += kWarps * 32) {
    const int sum_index = index / 32, owner = index % 32;
    const int r = sum_index / (kNTiles * 4), t = sum_index / 4 % kNTiles, i = sum_index % 4;
    const int feature = Product::feature_of(16 * r + owner / 4 + 8 * (i / 2));
    const int64_t n = n0 + feature, m = 8 * t + 2 * (owner % 4) + i % 2;
    if (feature < 0 || n >= out_features || m >= rows) continue;
    float sum = 0.0F;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][sum_index][owner];
    out[m * out_features + n] = scaled_output(sum, m, n, row_scale, scale, per_channel, bias, squared_relu);
  }
}

template <typename in_t, typename out_t, int kTiles, int kNTiles, int kStages, bool kPrefetch>
void small_batch_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                         const float* row_scale, const out_t* bias, bool squared_relu, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  constexpr int kWarps = 4;
  constexpr int kFeatures = tile_features<in_t, kTiles>();
  launch_dependent(packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles, kNTiles, kPrefetch>,
                   dim3(static_cast<unsigned>((out_features + kFeatures - 1) / kFeatures)), dim3(kWarps * 32), 0,
                   at::cuda::getCurrentCUDAStream(), reinterpret_cast<const in_t*>(x.data_ptr()), x.size(1), rows,
                   reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()), words, out_features, words % 4 == 0,
                   scale.data_ptr<float>(), scale.size(0) > 1, row_scale, bias, squared_relu, out.data_ptr<out_t>());
}

}  // namespace

void mma_product(const PackedProduct& p, bool prefetch) {
  const int64_t rows = p.x.size(0), out_features = p.packed.size(0);
  const char* name = prefetch ? "mma_prefetch" : "mma";
  const int64_t max_rows = prefetch ? kMaxMmaPrefetchVariantRows : kMaxMmaVariantRows;
  TORCH_CHECK(rows <= max_rows, "bittorch::packed_ternary_linear: kernel \"", name, "\" takes at most ", max_rows,
              " rows, not ", rows);
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  at::Tensor out = p.out;
  dispatch_packed_product(p, "bittorch_packed_mma", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    // Two tiles per warp share each input fragment, but halve the blocks: only where there
    // are still about six blocks per multiprocessor. With prefetching, the codes of two groups
    // are held at once: groups of half as many chunks, in the same registers; beyond 8 rows,
    // two n-tiles share each decoded code fragment, one chunk a group (two spill).
    const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    const bool two_tiles = out_features >= 6 * multiprocessors * tile_features<in_t, 2>();
    const auto launch = [&](auto product) {
      product(p.x, rows, p.packed, p.scale, row_scale, bias, p.squared_relu, out);
    };
    if (prefetch && rows > 8) {
      launch(small_batch_product<in_t, out_t, 1, 2, 1, true>);
    } else if (two_tiles && prefetch) {
      launch(small_batch_product<in_t, out_t, 2, 1, 1, true>);
    } else if (two_tiles) {
      launch(small_batch_product<in_t, out_t, 2, 1, 2, false>);
    } else if (prefetch) {
      launch(small_batch_product<in_t, out_t, 1, 1, 2, true>);
    } else {
      launch(small_batch_product<in_t, out_t, 1, 1, 3, false>);
    }
  });
}

}  // namespace bittorch::ops::cuda
