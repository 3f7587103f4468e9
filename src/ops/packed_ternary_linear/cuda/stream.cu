// The stream variant of packed_ternary_linear (variants.h): 16-bit or 8-bit activations, any
// rows (64 a block), the codes streamed through shared memory by a cp.async pipeline.
//
// A block owns kWarps x kTiles mma tiles of output features (each warp its own) and up to 64
// rows, over one range of K. Every stage holds one chunk of K (256 elements): the block's input
// rows as they are (one copy for all its warps) and each lane's own codes (16 bytes of each of
// its code rows, read by that lane only), brought kStages - 1 chunks ahead, the codes with an
// L2 evict-first policy (read once; the rows are read by every block). Each lane decodes its
// own code words in registers (no codes move between lanes; the K order inside an mma is the
// lane's word order) and each decoded fragment serves every 8-row n-tile: 16-bit rows as in
// the mma variant (pairs {f, f + 8}, m16n8k16), 8-bit rows (int8, or e4m3 on FP8 tensor cores)
// on the 8-bit tensor cores (m16n8k32), the codes turned to operand bytes in K order so that
// the rows' own 32-bit words are the B operands. Where the blocks would not fill the GPU, they
// split K; each writes its float32 sums to a buffer of its own, and scale_sums adds the
// buffers in split order (the same sums on every run) and writes the output.

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

namespace bittorch::ops::cuda {
namespace {

// The shared memory of a block and its work.
template <typename in_t, int kNTiles, int kTiles, int kWarps>
struct StreamTile {
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = 8 * kNTiles;
  // A row's chunk of K in 16-byte pieces, then the row's bytes in a stage: 16 more, so that
  // consecutive rows start in different banks.
  static constexpr int kPieces = kWordsPerChunk * static_cast<int>(sizeof(in_t));
  static constexpr int kRowBytes = kPieces * 16 + 16;
  static constexpr int kInputBytes = kRows * kRowBytes;
  static constexpr int kCodeBytes = kWarps * kTiles * 2 * 32 * 16;  // [warp][tile][half][lane] x 16 bytes
  static constexpr int kStageBytes = kInputBytes + kCodeBytes;
  // Four stages where they fit 160 KB (an A100 block's shared memory), else three.
  static constexpr int kStages = 4 * kStageBytes <= 160 * 1024 ? 4 : 3;
  static constexpr int kSharedBytes = kStages * kStageBytes;
  static constexpr int kWarpFeatures = tile_features<in_t, kTiles>();
  static constexpr int kBlockFeatures = kWarps * kWarpFeatures;
};

// Where piece `piece` of a row's chunk sits in the row: lane (group g, quad t) reads word
// 4t + q, so the four quads would read the same banks; pieces of different quads are moved
// apart (XOR on the piece's position in its 128 bytes).
__device__ __forceinline__ int swizzled_piece(int piece) {
  return piece ^ (((piece >> 3) & 3) << 1);
}

struct StreamArgs {
  const void* x;     // [rows, x_stride] elements, padded to words * 16 columns, 16-byte aligned
  int64_t x_stride;  // elements
  int64_t rows;
  const uint32_t* packed;
  int64_t words, out_features;
  bool vector_codes;  // code rows of whole 16-byte vectors (words % 4 == 0, aligned)
  int64_t chunks, chunks_per_split, feature_blocks;
  const float* scale;
  bool per_channel;
  const float* row_scale;
  bool squared_relu;
  float* partials;  // [splits][rows][out_features] where K is split, else null
};

// blockIdx.x = split * feature_blocks + feature block, blockIdx.y = slice of kRows rows. Writes
// out, or (args.partials) the split's float32 sums.
template <typename in_t, typename out_t, int kNTiles, int kTiles, int kWarps>
__global__ void __launch_bounds__(kWarps * 32)
    packed_stream_kernel(StreamArgs args, const out_t* __restrict__ bias, out_t* __restrict__ out) {
  using Tile = StreamTile<in_t, kNTiles, kTiles, kWarps>;
  using mma_t = mma_operand_t<in_t>;
  // 8-bit rows multiply on the 8-bit tensor cores (m16n8k32), 16-bit ones with m16n8k16.
  constexpr bool kByteMma = sizeof(in_t) == 1;
  constexpr int kStages = Tile::kStages;
  extern __shared__ uint4 shared[];
  auto* stages = reinterpret_cast<uint8_t*>(shared);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
  const int64_t feature_block = blockIdx.x % args.feature_blocks, split = blockIdx.x / args.feature_blocks;
  const int64_t block_n0 = feature_block * Tile::kBlockFeatures, n0 = block_n0 + warp * Tile::kWarpFeatures;
  const int64_t m0 = int64_t{blockIdx.y} * Tile::kRows;
  const int64_t begin = split * args.chunks_per_split, end = min(begin + args.chunks_per_split, args.chunks);

  // This lane's code rows: fragment rows group and group + 8 of each tile; null (zeros) for the
  // offset row and past the last feature.
  const uint32_t* code_rows[kTiles][2];
#pragma unroll
  for (int r = 0; r < kTiles; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int feature = tile_feature_of<in_t>(16 * r + 8 * h + group);
      code_rows[r][h] =
          feature >= 0 && n0 + feature < args.out_features ? args.packed + (n0 + feature) * args.words : nullptr;
    }
  }
  const uint64_t evict_first = evict_first_policy();
  const auto lane_codes = [&](int stage) {  // this lane's slots of a stage: [tile][half] x 32 lanes
    return reinterpret_cast<uint4*>(stages + stage * Tile::kStageBytes + Tile::kInputBytes) + warp * kTiles * 2 * 32 +
           lane;
  };
  const auto load_codes = [&](int64_t chunk, int stage) {
    uint4* slots = lane_codes(stage);
    const int64_t first = chunk * kWordsPerChunk + 4 * quad;
#pragma unroll
    for (int r = 0; r < kTiles; ++r) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t* row = code_rows[r][h];
        uint4* slot = slots + (2 * r + h) * 32;
        if (args.vector_codes) {
          const bool valid = row != nullptr && first < args.words;
          copy_async_16(slot, valid ? row + first : args.packed, valid, evict_first);
        } else {
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const bool valid = row != nullptr && first + q < args.words;
            copy_async_4(reinterpret_cast<uint32_t*>(slot) + q, valid ? row + first + q : args.packed, valid);
          }
        }
      }
    }
  };
  const auto* x = static_cast<const uint8_t*>(args.x);
  const auto load_inputs = [&](int64_t chunk, int stage) {
    uint8_t* rows = stages + stage * Tile::kStageBytes;
    for (int i = threadIdx.x; i < Tile::kRows * Tile::kPieces; i += Tile::kThreads) {
      const int r = i / Tile::kPieces, piece = i % Tile::kPieces;
      const int64_t m = m0 + r, word = chunk * kWordsPerChunk + piece / static_cast<int>(sizeof(in_t));
      const bool valid = m < args.rows && word < args.words;
      const uint8_t* src = x + (m * args.x_stride + chunk * kWordsPerChunk * 16) * sizeof(in_t) + piece * 16;
      copy_async_16(rows + r * Tile::kRowBytes + swizzled_piece(piece) * 16, valid ? src : x, valid);
    }
  };

  // The codes are constants: their first stages are on their way before the wait for the
  // kernel before (whose output the rows are). Group s holds stage s's rows (group 0 also the
  // early codes).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (begin + s < end) load_codes(begin + s, s);
  }
  wait_for_prior_grid_and_allow_next();
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (begin + s < end) load_inputs(begin + s, s);
    commit_copies();
  }

  const CodeDecoder<mma_t> decoder;
  sum_t<in_t> acc[kTiles][kNTiles][4] = {};
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    const int stage = static_cast<int>((chunk - begin) % kStages);
    wait_copies<kStages - 2>();
    __syncthreads();  // the stage's rows are in; the stage before it is free
    const int64_t next = chunk + kStages - 1;
    if (next < end) {
      const int free_stage = static_cast<int>((next - begin) % kStages);
      load_codes(next, free_stage);
      load_inputs(next, free_stage);
    }
    commit_copies();

    const uint8_t* rows = stages + stage * Tile::kStageBytes;
    uint4 codes[kTiles][2];
#pragma unroll
    for (int r = 0; r < kTiles; ++r) {
#pragma unroll
      for (int h = 0; h < 2; ++h) codes[r][h] = lane_codes(stage)[(2 * r + h) * 32];
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int word = 4 * quad + q;  // of the chunk: the one this lane's codes hold
      if constexpr (kByteMma) {
        // Codes in K order, 4 a register (code_fields), and the rows' bytes as they are: each
        // register of the input word is a B operand.
        uint32_t a[kTiles][2][4];
#pragma unroll
        for (int r = 0; r < kTiles; ++r) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            uint32_t fields[4];
            code_fields(reinterpret_cast<const uint32_t*>(&codes[r][h])[q], fields);
#pragma unroll
            for (int b = 0; b < 4; ++b) a[r][h][b] = operand_bits<in_t>(fields[b]);
          }
        }
#pragma unroll
        for (int t = 0; t < kNTiles; ++t) {
          const uint4 input =
              *reinterpret_cast<const uint4*>(rows + (8 * t + group) * Tile::kRowBytes + swizzled_piece(word) * 16);
          const uint32_t* x_words = reinterpret_cast<const uint32_t*>(&input);
#pragma unroll
          for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int r = 0; r < kTiles; ++r) {
              const uint32_t fragment[4] = {a[r][0][2 * i], a[r][1][2 * i], a[r][0][2 * i + 1], a[r][1][2 * i + 1]};
              mma_tile<in_t>(acc[r][t], fragment, x_words[2 * i], x_words[2 * i + 1]);
            }
          }
        }
      } else {
        uint32_t a[kTiles][2][8];
#pragma unroll
        for (int r = 0; r < kTiles; ++r) {
#pragma unroll
          for (int h = 0; h < 2; ++h) decoder.decode(reinterpret_cast<const uint32_t*>(&codes[r][h])[q], a[r][h]);
        }
#pragma unroll
        for (int t = 0; t < kNTiles; ++t) {
          const uint8_t* row = rows + (8 * t + group) * Tile::kRowBytes;
          InputWord<in_t> input;
#pragma unroll
          for (int v = 0; v < 2; ++v)
            input.raw[v] = *reinterpret_cast<const uint4*>(row + swizzled_piece(2 * word + v) * 16);
          uint32_t b[8];
          pair_inputs<in_t>(input, b);
          multiply_word<mma_t>(acc, t, a, b);
        }
      }
    }
  }
  wait_copies<0>();
  if constexpr (!kByteMma) remove_code_offset<mma_t>(acc);

  // Accumulator i of tile r, n-tile t: feature n0 + tile_feature_of(16r + group + 8(i / 2)),
  // row m0 + 8t + 2 * quad + i % 2.
  const auto for_each_sum = [&](auto&& f) {
#pragma unroll
    for (int r = 0; r < kTiles; ++r) {
#pragma unroll
      for (int t = 0; t < kNTiles; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int feature = tile_feature_of<in_t>(16 * r + group + 8 * (i / 2));
          const int64_t n = n0 + feature, m = m0 + 8 * t + 2 * quad + i % 2;
          if (feature >= 0 && n < args.out_features && m < args.rows) f(m, n, static_cast<float>(acc[r][t][i]));
        }
      }
    }
  };
  if (args.partials == nullptr) {
    for_each_sum([&](int64_t m, int64_t n, float sum) {
      out[m * args.out_features + n] =
          scaled_output(sum, m, n, args.row_scale, args.scale, args.per_channel, bias, args.squared_relu);
    });
  } else {
    float* partials = args.partials + split * args.rows * args.out_features;
    for_each_sum([&](int64_t m, int64_t n, float sum) { partials[m * args.out_features + n] = sum; });
  }
}

// At most this many ranges of K.
constexpr int64_t kMaxSplits = 16;
// The sums' pass (scale_sums) costs about two chunks of a block (its launch and the wait for
// it), plus its reads and writes.
constexpr double kSumPassChunks = 2.0;

// The number of ranges of K for `tiles` blocks of `chunks` chunks, each chunk moving
// `chunk_bytes` (codes and rows): the one of least estimated time, counted in chunks of one
// block: the busiest multiprocessor's chunks (blocks per multiprocessor rounded up, times
// chunks per block), and with splits the sums' pass (writing and reading splits x `outputs`
// float32 sums, at the GPU's rate of chunks).
int64_t chosen_splits(int64_t tiles, int64_t chunks, int64_t chunk_bytes, int64_t outputs, int64_t multiprocessors) {
  int64_t best = 1;
  double best_cost = 0;
  for (int64_t splits = 1; splits <= std::min(chunks, kMaxSplits); ++splits) {
    const int64_t per_split = (chunks + splits - 1) / splits, used = (chunks + per_split - 1) / per_split;
    if (used != splits) continue;  // the same ranges as a smaller count: the count returned covers them exactly
    const int64_t blocks = tiles * splits;
    double cost = static_cast<double>((blocks + multiprocessors - 1) / multiprocessors * per_split);
    if (splits > 1) {
      cost += kSumPassChunks +
              static_cast<double>(splits * outputs * 8) / static_cast<double>(chunk_bytes * multiprocessors);
    }
    if (splits == 1 || cost < best_cost) {
      best = splits;
      best_cost = cost;
    }
  }
  return best;
}

template <typename in_t, typename out_t, int kNTiles, int kTiles, int kWarps>
void stream_product_of(const PackedProduct& p, const float* row_scale, const out_t* bias) {
  using Tile = StreamTile<in_t, kNTiles, kTiles, kWarps>;
  constexpr auto kernel = packed_stream_kernel<in_t, out_t, kNTiles, kTiles, kWarps>;
  opt_in_shared_memory<kernel>(Tile::kSharedBytes);
  StreamArgs args{};
  args.x = p.x.data_ptr();
  args.x_stride = p.x.size(1);
  args.rows = p.x.size(0);
  args.packed = reinterpret_cast<const uint32_t*>(p.packed.data_ptr<int32_t>());
  args.words = p.packed.size(1);
  args.out_features = p.packed.size(0);
  args.vector_codes = args.words % 4 == 0 && reinterpret_cast<uintptr_t>(args.packed) % 16 == 0;
  args.chunks = (args.words + kWordsPerChunk - 1) / kWordsPerChunk;
  args.feature_blocks = (args.out_features + Tile::kBlockFeatures - 1) / Tile::kBlockFeatures;
  args.scale = p.scale.data_ptr<float>();
  args.per_channel = p.scale.size(0) > 1;
  args.row_scale = row_scale;
  args.squared_relu = p.squared_relu;
  const int64_t slices = (args.rows + Tile::kRows - 1) / Tile::kRows;
  TORCH_CHECK(slices <= 65535, "bittorch::packed_ternary_linear: kernel \"stream\" takes at most ", 65535 * Tile::kRows,
              " rows (a grid of 65535 slices), not ", args.rows);
  const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t chunk_bytes = int64_t{Tile::kBlockFeatures} * kWordsPerChunk * 4 + int64_t{Tile::kInputBytes};
  const int64_t splits = chosen_splits(args.feature_blocks * slices, args.chunks, chunk_bytes,
                                       args.rows * args.out_features, multiprocessors);
  args.chunks_per_split = (args.chunks + splits - 1) / splits;  // splits such ranges cover the chunks
  at::Tensor partials;
  if (splits > 1) {
    partials = at::empty({splits, args.rows, args.out_features}, p.x.options().dtype(at::kFloat));
    args.partials = partials.data_ptr<float>();
  }
  at::Tensor out = p.out;
  launch_dependent(kernel, dim3(static_cast<unsigned>(args.feature_blocks * splits), static_cast<unsigned>(slices)),
                   dim3(Tile::kThreads), Tile::kSharedBytes, at::cuda::getCurrentCUDAStream(), args, bias,
                   out.data_ptr<out_t>());
  if (splits > 1) {
    scale_sums<out_t>(args.partials, args.rows, args.out_features, row_scale, p.scale, bias, p.squared_relu, out,
                      splits);
  }
}

}  // namespace

// Rows in slices of 8, 16, 32 or 64 (each decoded fragment serves all of them); 64-row slices
// in blocks of eight warps (their rows are a block's largest reads), the others in four.
void stream_product(const PackedProduct& p) {
  TORCH_CHECK(p.x.scalar_type() != at::kFloat8_e4m3fn || has_fp8_tensor_cores(),
              "bittorch::packed_ternary_linear: kernel \"stream\" takes float8_e4m3 activations only on GPUs with FP8 "
              "tensor cores (compute capability 8.9 and later)");
  const int64_t rows = p.x.size(0);
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  dispatch_packed_product(p, "bittorch_packed_stream", [&](auto in_tag, auto out_tag, const auto* bias) {
    using in_t = decltype(in_tag);
    using out_t = decltype(out_tag);
    if (rows <= 8) {
      stream_product_of<in_t, out_t, 1, 2, 4>(p, row_scale, bias);
    } else if (rows <= 16) {
      stream_product_of<in_t, out_t, 2, 2, 4>(p, row_scale, bias);
    } else if (rows <= 32) {
      stream_product_of<in_t, out_t, 4, 2, 4>(p, row_scale, bias);
    } else {
      stream_product_of<in_t, out_t, 8, 2, 8>(p, row_scale, bias);
    }
  });
}

}  // namespace bittorch::ops::cuda
