// The split_k variant of packed_ternary_linear (variants.h): 16-bit or 8-bit activations on
// tensor cores, blocks over ranges of K adding float32 partial sums, then one scaling pass.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

#include <algorithm>

namespace bittorch::ops::cuda {
namespace {

// More rows: block = kWarps mma tiles of output features x 8 * kNTiles input rows x one range
// of K; sums go into `sums` (float32 [rows, out_features], zeroed) by atomic adds.
// blockIdx.x = (feature block * k_splits + k split) * slices + slice: the blocks that read
// the same codes run together, so repeats come from L2.
template <typename in_t, int kNTiles, int kWarps, int kStages>
__global__ void __launch_bounds__(kWarps * 32, 2)
    packed_mma_split_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, int64_t slices,
                            int64_t k_splits, int64_t chunks_per_split, const uint32_t* __restrict__ packed,
                            int64_t words, int64_t out_features, bool vector_loads, float* __restrict__ sums) {
  wait_for_prior_grid_and_allow_next();
  using Product = WarpProduct<in_t, kNTiles, kStages, 1>;
  extern __shared__ uint4 staged[];  // [8 * kNTiles rows][words of the split][2]: mma pairs
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t slice = blockIdx.x % slices, split = blockIdx.x / slices % k_splits;
  const int64_t n0 = (blockIdx.x / slices / k_splits * kWarps + warp) * Product::kFeatures, m0 = slice * 8 * kNTiles;
  const int64_t chunks = (words + kWordsPerChunk - 1) / kWordsPerChunk;
  const int64_t begin = split * chunks_per_split, end = min(begin + chunks_per_split, chunks);
  // The block's inputs, read once (coalesced) and paired once for all its warps.
  const int64_t staged_words = (end - begin) * kWordsPerChunk;
  for (int64_t item = threadIdx.x; item < 8 * kNTiles * staged_words; item += kWarps * 32) {
    const int64_t r = item / staged_words, word = begin * kWordsPerChunk + item % staged_words;
    InputWord<in_t> input;
    const bool present = m0 + r < rows && word < words;
    const auto* src = reinterpret_cast<const uint4*>(x + (present ? m0 + r : 0) * x_stride + word * 16);
#pragma unroll
    for (int v = 0; v < static_cast<int>(sizeof(in_t)); ++v)
      input.raw[v] = present ? __ldg(src + v) : make_uint4(0, 0, 0, 0);
    uint32_t b[8];
    pair_inputs<in_t>(input, b);
    staged[item * 2] = *reinterpret_cast<const uint4*>(&b[0]);
    staged[item * 2 + 1] = *reinterpret_cast<const uint4*>(&b[4]);
  }
  __syncthreads();
  if (n0 >= out_features) return;  // whole warps: remove_offset's shuffles see all lanes
  Product product(x, x_stride, rows, m0, packed, words, out_features, n0);
  product.run(begin, end, 1, words, vector_loads, staged);
  product.remove_offset();
#pragma unroll
  for (int t = 0; t < kNTiles; ++t) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int feature = Product::feature_of(lane / 4 + 8 * (i / 2));
      const int64_t n = n0 + feature, m = m0 + 8 * t + 2 * (lane % 4) + i % 2;
      if (feature >= 0 && n < out_features && m < rows) atomicAdd(sums + m * out_features + n, product.acc[0][t][i]);
    }
  }
}

template <typename in_t, typename out_t, int kNTiles>
void split_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                   const float* row_scale, const out_t* bias, bool squared_relu, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const auto stream = at::cuda::getCurrentCUDAStream();
  constexpr int kWarps = 8, kStages = 2;
  // Staged inputs per chunk of K: 8 * kNTiles rows x 16 words x 32 bytes of pairs.
  constexpr int64_t kStagedBytesPerChunk = 8 * kNTiles * kWordsPerChunk * 32;
  constexpr int64_t kMaxChunksPerSplit = 48 * 1024 / kStagedBytesPerChunk;  // the default shared-memory limit
  const int64_t slices = (rows + 8 * kNTiles - 1) / (8 * kNTiles);
  const int64_t block_features = int64_t{tile_features<in_t>()} * kWarps;
  const int64_t feature_blocks = (out_features + block_features - 1) / block_features;
  const int64_t chunks = (words + kWordsPerChunk - 1) / kWordsPerChunk;
  const int64_t wanted_blocks = 4 * int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
  const int64_t wanted_splits = std::clamp<int64_t>(wanted_blocks / (feature_blocks * slices), 1, chunks);
  const int64_t chunks_per_split = std::min((chunks + wanted_splits - 1) / wanted_splits, kMaxChunksPerSplit);
  const int64_t k_splits = (chunks + chunks_per_split - 1) / chunks_per_split;
  at::Tensor sums = at::zeros({rows, out_features}, x.options().dtype(at::kFloat));
  launch_dependent(packed_mma_split_kernel<in_t, kNTiles, kWarps, kStages>,
                   dim3(static_cast<unsigned>(feature_blocks * k_splits * slices)), dim3(kWarps * 32),
                   static_cast<size_t>(chunks_per_split * kStagedBytesPerChunk), stream,
                   reinterpret_cast<const in_t*>(x.data_ptr()), x.size(1), rows, slices, k_splits, chunks_per_split,
                   reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()), words, out_features, words % 4 == 0,
                   sums.data_ptr<float>());
  scale_sums<out_t>(sums.data_ptr<float>(), rows, out_features, row_scale, scale, bias, squared_relu, out);
}

}  // namespace

// 16 rows per slice (32 beyond 16 rows; each decoded fragment serves every n-tile) and enough
// splits of K for about four blocks per multiprocessor.
void split_k_product(const PackedProduct& p) {
  const int64_t rows = p.x.size(0);
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  at::Tensor out = p.out;
  dispatch_packed_product(p, "bittorch_packed_split_k", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    if (rows <= 16) {
      split_product<in_t, out_t, 2>(p.x, rows, p.packed, p.scale, row_scale, bias, p.squared_relu, out);
    } else {
      split_product<in_t, out_t, 4>(p.x, rows, p.packed, p.scale, row_scale, bias, p.squared_relu, out);
    }
  });
}

}  // namespace bittorch::ops::cuda
