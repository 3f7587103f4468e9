// The mma variant of packed_ternary_linear (variants.h): up to 8 rows of 16-bit or 8-bit
// activations on tensor cores.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

namespace bittorch::ops::cuda {
namespace {

// Up to 8 rows: block = one mma tile of output features, warps interleaved over the chunks of K.
// At most 96 registers for one tile per warp: five blocks per multiprocessor (100 gives four).
template <typename in_t, typename out_t, int kWarps, int kStages, int kTiles>
__global__ void __launch_bounds__(kWarps * 32, kTiles == 1 ? 5 : 4)
    packed_mma_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, const uint32_t* __restrict__ packed,
                      int64_t words, int64_t out_features, bool vector_loads, const float* __restrict__ scale,
                      bool per_channel, const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                      bool squared_relu, out_t* __restrict__ out) {
  wait_for_prior_grid_and_allow_next();
  using Product = WarpProduct<in_t, 1, kStages, kTiles>;
  __shared__ float partial[kWarps][kTiles * 4][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n0 = int64_t{blockIdx.x} * Product::kFeatures;
  Product product(x, x_stride, rows, 0, packed, words, out_features, n0);
  product.run(warp, (words + kWordsPerChunk - 1) / kWordsPerChunk, kWarps, words, vector_loads);
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
void small_batch_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                         const float* row_scale, const out_t* bias, bool squared_relu, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  constexpr int kWarps = 4;
  constexpr int kFeatures = tile_features<in_t, kTiles>();
  launch_dependent(packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles>,
                   dim3(static_cast<unsigned>((out_features + kFeatures - 1) / kFeatures)), dim3(kWarps * 32), 0,
                   at::cuda::getCurrentCUDAStream(), reinterpret_cast<const in_t*>(x.data_ptr()), x.size(1), rows,
                   reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()), words, out_features, words % 4 == 0,
                   scale.data_ptr<float>(), scale.size(0) > 1, row_scale, bias, squared_relu, out.data_ptr<out_t>());
}

}  // namespace

void mma_product(const PackedProduct& p) {
  const int64_t rows = p.x.size(0), out_features = p.packed.size(0);
  TORCH_CHECK(rows <= kMaxMmaVariantRows, "bittorch::packed_ternary_linear: kernel \"mma\" takes at most ",
              kMaxMmaVariantRows, " rows, not ", rows);
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  at::Tensor out = p.out;
  dispatch_packed_product(p, "bittorch_packed_mma", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    // Two tiles per warp share each input fragment, but halve the blocks: only where there
    // are still about six blocks per multiprocessor.
    const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    if (out_features >= 6 * multiprocessors * tile_features<in_t, 2>()) {
      small_batch_product<in_t, out_t, 2, 2>(p.x, rows, p.packed, p.scale, row_scale, bias, p.squared_relu, out);
    } else {
      small_batch_product<in_t, out_t, 1, 3>(p.x, rows, p.packed, p.scale, row_scale, bias, p.squared_relu, out);
    }
  });
}

}  // namespace bittorch::ops::cuda
