// The tiled variant of packed_ternary_linear (variants.h): a tensor-core GEMM for many rows
// that decodes the 2-bit codes once per tile into shared memory.
//
// A block computes 32, 64 or 128 rows x 128 output features over a range of K. Every stage holds
// 128 bytes of K per row (64 16-bit or 128 8-bit elements): the input rows as they are and the
// codes still packed (32 or 16 bytes per feature), both brought by cp.async kStages - 1 stages
// ahead. The codes of stage t + 1 are decoded into the operand type (+-1 and 0 as float16,
// bfloat16, int8 or e4m3) in one of two operand buffers while the warps multiply stage t, so
// one barrier per stage suffices. All tiles are rows of 128 bytes, their 16-byte chunks
// permuted by row (chunk ^ row % 8) so that ldmatrix reads them without bank conflicts; the K
// order of a row is the input's own, so the mma operands pair element with element. 8-bit
// activations multiply on the 8-bit tensor cores (m16n8k32: int8 with int32 sums, e4m3 with
// float32 sums), 16-bit ones with m16n8k16. Where the tiles would not fill the GPU, blocks
// also split K and add their sums into a buffer that scale_sums then scales.

#include "ops/common/cuda/async_copy.cuh"
#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/common/cuda/device.h"
#include "ops/packed_ternary_linear/cuda/variants.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bittorch::ops::cuda {
namespace {

constexpr int kThreads = 256;       // 8 warps
constexpr int kRowBytes = 128;      // bytes of K per tile row and stage: 8 chunks of 16 bytes
constexpr int kTileFeatures = 128;  // output features per block
constexpr int kStages = 4;
// A split of K takes at least this many stages: fewer make the added sums cost more than they save.
constexpr int64_t kMinStagesPerSplit = 4;

// The byte offset of chunk `chunk` (16 bytes) of row `row` in a tile of 128-byte rows.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kRowBytes + ((chunk ^ (row % 8)) * 16);
}

__device__ __forceinline__ void load_matrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// One word's 16 codes as operand bytes: 16 (8-bit) or 32 (16-bit).
template <typename in_t>
__device__ __forceinline__ void store_decoded(uint32_t word, uint8_t* tile, int row, int word_in_row) {
  uint32_t fields[4];
  code_fields(word, fields);
  if constexpr (sizeof(in_t) == 1) {
    const uint4 v = make_uint4(operand_bits<in_t>(fields[0]), operand_bits<in_t>(fields[1]),
                               operand_bits<in_t>(fields[2]), operand_bits<in_t>(fields[3]));
    *reinterpret_cast<uint4*>(tile + swizzled(row, word_in_row)) = v;
  } else {
    uint32_t halves[8];
#pragma unroll
    for (int b = 0; b < 4; ++b) {  // codes 4b, 4b + 1 and 4b + 2, 4b + 3 into the halves of two words
      halves[2 * b] = operand_bits<in_t>(__byte_perm(fields[b], 0, 0x4140));
      halves[2 * b + 1] = operand_bits<in_t>(__byte_perm(fields[b], 0, 0x4342));
    }
    *reinterpret_cast<uint4*>(tile + swizzled(row, 2 * word_in_row)) =
        make_uint4(halves[0], halves[1], halves[2], halves[3]);
    *reinterpret_cast<uint4*>(tile + swizzled(row, 2 * word_in_row + 1)) =
        make_uint4(halves[4], halves[5], halves[6], halves[7]);
  }
}

template <typename in_t>
constexpr int kCodeBytes = kRowBytes / sizeof(in_t) / 4;  // packed codes per feature and stage
template <typename in_t>
constexpr int kWordsPerStage = kCodeBytes<in_t> / 4;

template <int kRows, typename in_t>
constexpr int shared_bytes() {
  return kStages * (kRows * kRowBytes + kTileFeatures * kCodeBytes<in_t>)+2 * kTileFeatures * kRowBytes;
}

struct TiledArgs {
  const uint8_t* x;     // rows of x_row_bytes (16-byte multiple), zero-padded to whole words
  int64_t x_row_bytes;  // = words * 16 * sizeof(in_t)
  int64_t rows;
  const uint32_t* packed;
  int64_t words, out_features;
  bool vector_codes;  // rows of whole 16-byte chunks, 16-byte aligned: 16-byte code copies
  int64_t row_tiles, splits, stages_per_split, stages;
  const float* scale;
  bool per_channel;
  const float* row_scale;
  bool squared_relu;  // the epilogue
};

// kRows rows (1, 2 or 4 warps of 32 rows) x 128 features (8, 4 or 2 warps of 16, 32 or 64). At most 128
// registers: two blocks per multiprocessor.
template <typename in_t, typename out_t, int kRows>
__global__ void __launch_bounds__(kThreads, 2)
    packed_tiled_kernel(TiledArgs args, const out_t* __restrict__ bias, out_t* __restrict__ out, sum_t<in_t>* sums) {
  wait_for_prior_grid_and_allow_next();
  constexpr int kWarpRows = kRows / 32, kWarpColumns = 8 / kWarpRows;
  constexpr int kNTiles = kTileFeatures / kWarpColumns / 8;  // 8-feature mma tiles per warp
  constexpr int kCodes = kCodeBytes<in_t>, kWords = kWordsPerStage<in_t>;
  extern __shared__ uint4 shared[];
  uint8_t* const x_tiles = reinterpret_cast<uint8_t*>(shared);                   // [kStages][kRows][128]
  uint8_t* const code_tiles = x_tiles + kStages * kRows * kRowBytes;             // [kStages][128][kCodes]
  uint8_t* const operand_tiles = code_tiles + kStages * kTileFeatures * kCodes;  // [2][128][128]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_row = warp / kWarpColumns, warp_column = warp % kWarpColumns;
  const int64_t m0 = blockIdx.x % args.row_tiles * kRows;
  const int64_t split = blockIdx.x / args.row_tiles % args.splits;
  const int64_t n0 = blockIdx.x / args.row_tiles / args.splits * kTileFeatures;
  const int64_t first_stage = split * args.stages_per_split;
  const int stages = static_cast<int>(min(args.stages_per_split, args.stages - first_stage));

  const auto load_stage = [&](int t) {
    const int64_t k_stage = first_stage + t;
    uint8_t* const x_tile = x_tiles + (t % kStages) * kRows * kRowBytes;
    for (int i = threadIdx.x; i < kRows * 8; i += kThreads) {
      const int row = i / 8, chunk = i % 8;
      const int64_t byte = k_stage * kRowBytes + chunk * 16;
      const bool valid = m0 + row < args.rows && byte < args.x_row_bytes;
      copy_async_16(x_tile + swizzled(row, chunk), valid ? args.x + (m0 + row) * args.x_row_bytes + byte : args.x,
                    valid);
    }
    uint8_t* const code_tile = code_tiles + (t % kStages) * kTileFeatures * kCodes;
    if (args.vector_codes) {
      for (int i = threadIdx.x; i < kTileFeatures * kCodes / 16; i += kThreads) {
        const int row = i / (kCodes / 16), chunk = i % (kCodes / 16);
        const int64_t word = k_stage * kWords + chunk * 4;
        const bool valid = n0 + row < args.out_features && word < args.words;
        copy_async_16(code_tile + row * kCodes + chunk * 16,
                      valid ? args.packed + (n0 + row) * args.words + word : args.packed, valid);
      }
    } else {
      for (int i = threadIdx.x; i < kTileFeatures * kWords; i += kThreads) {
        const int row = i / kWords, w = i % kWords;
        const int64_t word = k_stage * kWords + w;
        const bool valid = n0 + row < args.out_features && word < args.words;
        copy_async_4(code_tile + row * kCodes + w * 4,
                     valid ? args.packed + (n0 + row) * args.words + word : args.packed, valid);
      }
    }
  };
  // Item `item` (of kItemsPerThread) of this thread's share of stage t's codes.
  constexpr int kItemsPerThread = kTileFeatures * kWords / kThreads;  // 4 words (8-bit) or 2 (16-bit)
  static_assert(kTileFeatures * kWords % kThreads == 0 && kItemsPerThread <= kRowBytes / 32);
  const auto decode_item = [&](int t, int item) {
    const auto* code_tile = reinterpret_cast<const uint32_t*>(code_tiles + (t % kStages) * kTileFeatures * kCodes);
    uint8_t* const operand_tile = operand_tiles + (t % 2) * kTileFeatures * kRowBytes;
    const int i = threadIdx.x + item * kThreads;
    store_decoded<in_t>(code_tile[i], operand_tile, i / kWords, i % kWords);
  };

  sum_t<in_t> acc[2][kNTiles][4] = {};
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < stages) load_stage(t);
    commit_copies();  // empty groups too: the waits below count groups
  }
  wait_copies<kStages - 2>();  // stage 0
  __syncthreads();
#pragma unroll
  for (int item = 0; item < kItemsPerThread; ++item) decode_item(0, item);
  for (int t = 0; t < stages; ++t) {
    wait_copies<kStages - 3>();  // stage t + 1 has landed (stage t already had)
    __syncthreads();             // stage t's operand is decoded; stage t - 1's buffers are free
    if (t + kStages - 1 < stages) load_stage(t + kStages - 1);
    commit_copies();
    const bool decode_next = t + 1 < stages;
    const uint8_t* const x_tile = x_tiles + (t % kStages) * kRows * kRowBytes;
    const uint8_t* const operand_tile = operand_tiles + (t % 2) * kTileFeatures * kRowBytes;
    const int matrix = lane / 8, matrix_row = lane % 8;
#pragma unroll
    for (int kk = 0; kk < kRowBytes / 32; ++kk) {
      // The next stage's codes are decoded a share at a time between the products, so that the
      // tensor cores and the integer units work at once.
      if (decode_next && kk < kItemsPerThread) decode_item(t + 1, kk);
      uint32_t a[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int row = warp_row * 32 + mi * 16 + matrix_row + (matrix % 2) * 8;
        load_matrix_x4(a[mi], x_tile + swizzled(row, 2 * kk + matrix / 2));
      }
#pragma unroll
      for (int nj = 0; nj < kNTiles; nj += 2) {
        uint32_t b[4];  // b0, b1 of tiles nj and nj + 1
        const int feature = warp_column * kNTiles * 8 + (nj + matrix / 2) * 8 + matrix_row;
        load_matrix_x4(b, operand_tile + swizzled(feature, 2 * kk + matrix % 2));
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_tile<in_t>(acc[mi][nj], a[mi], b[0], b[1]);
          mma_tile<in_t>(acc[mi][nj + 1], a[mi], b[2], b[3]);
        }
      }
    }
  }

  // Accumulator i of tile (mi, nj): row group + 8 * (i / 2), feature 2 * (lane % 4) + i % 2.
  const int group = lane / 4, pair = 2 * (lane % 4);
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int nj = 0; nj < kNTiles; ++nj) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + warp_row * 32 + mi * 16 + group + 8 * (i / 2);
        const int64_t n = n0 + warp_column * kNTiles * 8 + nj * 8 + pair + i % 2;
        if (m >= args.rows || n >= args.out_features) continue;
        if (args.splits == 1) {
          out[m * args.out_features + n] = scaled_output(static_cast<float>(acc[mi][nj][i]), m, n, args.row_scale,
                                                         args.scale, args.per_channel, bias, args.squared_relu);
        } else {
          atomicAdd(sums + m * args.out_features + n, acc[mi][nj][i]);
        }
      }
    }
  }
}

template <typename in_t, typename out_t, int kRows>
void tiled_product_of(const PackedProduct& p, const out_t* bias, at::Tensor& out) {
  TiledArgs args{};
  args.x = reinterpret_cast<const uint8_t*>(p.x.data_ptr());
  args.x_row_bytes = p.x.size(1) * static_cast<int64_t>(sizeof(in_t));
  args.rows = p.x.size(0);
  args.packed = reinterpret_cast<const uint32_t*>(p.packed.data_ptr<int32_t>());
  args.words = p.packed.size(1);
  args.out_features = p.packed.size(0);
  args.vector_codes = args.words % 4 == 0 && reinterpret_cast<uintptr_t>(args.packed) % 16 == 0;
  args.scale = p.scale.data_ptr<float>();
  args.per_channel = p.scale.size(0) > 1;
  args.row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  args.squared_relu = p.squared_relu;
  args.row_tiles = (args.rows + kRows - 1) / kRows;
  args.stages = (args.words + kWordsPerStage<in_t> - 1) / kWordsPerStage<in_t>;
  const int64_t feature_tiles = (args.out_features + kTileFeatures - 1) / kTileFeatures;
  const int64_t tiles = args.row_tiles * feature_tiles;
  const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  // Fewer tiles than multiprocessors: split K into as many ranges as fit one wave of two blocks
  // per multiprocessor (a second, partial wave would double the time).
  int64_t splits = 1;
  if (tiles < multiprocessors) {
    splits =
        std::clamp<int64_t>(2 * multiprocessors / tiles, 1, std::max<int64_t>(args.stages / kMinStagesPerSplit, 1));
  }
  args.stages_per_split = (args.stages + splits - 1) / splits;
  args.splits = (args.stages + args.stages_per_split - 1) / args.stages_per_split;

  at::Tensor sums;
  if (args.splits > 1) {
    sums = at::zeros({args.rows, args.out_features},
                     p.x.options().dtype(std::is_same_v<sum_t<in_t>, int32_t> ? at::kInt : at::kFloat));
  }
  constexpr int kShared = shared_bytes<kRows, in_t>();
  const auto kernel = packed_tiled_kernel<in_t, out_t, kRows>;
  opt_in_shared_memory<packed_tiled_kernel<in_t, out_t, kRows>>(kShared);
  launch_dependent(kernel, dim3(static_cast<unsigned>(tiles * args.splits)), dim3(kThreads), kShared,
                   at::cuda::getCurrentCUDAStream(), args, bias, out.data_ptr<out_t>(),
                   sums.defined() ? sums.data_ptr<sum_t<in_t>>() : nullptr);
  if (args.splits > 1) {
    scale_sums<out_t>(sums.data_ptr<sum_t<in_t>>(), args.rows, args.out_features, args.row_scale, p.scale, bias,
                      args.squared_relu, out);
  }
}

}  // namespace

void tiled_product(const PackedProduct& p) {
  TORCH_CHECK(p.x.scalar_type() != at::kFloat8_e4m3fn || has_fp8_tensor_cores(),
              "bittorch::packed_ternary_linear: kernel \"tiled\" takes float8_e4m3 activations only on GPUs with FP8 "
              "tensor cores (compute capability 8.9 and later)");
  at::Tensor out = p.out;
  dispatch_packed_product(p, "bittorch_packed_tiled", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    if (p.x.size(0) <= 32) {
      tiled_product_of<in_t, out_t, 32>(p, bias, out);
    } else if (p.x.size(0) <= 64) {
      tiled_product_of<in_t, out_t, 64>(p, bias, out);
    } else {
      tiled_product_of<in_t, out_t, 128>(p, bias, out);
    }
  });
}

}  // namespace bittorch::ops::cuda
