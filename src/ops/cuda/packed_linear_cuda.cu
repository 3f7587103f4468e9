// CUDA kernels of bittorch::packed_ternary_linear.
//
// float16 / bfloat16 activations, and 8-bit activations, up to kMaxMmaRows rows: a
// tensor-core kernel that decodes the 2-bit codes straight into mma fragments (below).
// float32 activations up to kMaxGemvRows rows: a GEMV that turns each code into -1/0/+1 in
// registers and accumulates code * x in float32 (tensor cores would round the input).
// More rows: the codes are expanded to the layer's operand (codes * scale in the input dtype,
// or 8-bit codes) and the product is cuBLAS's.

#include "ops/checks.h"
#include "ops/cpu/ternary_linear_cpu.h"
#include "ops/cuda/activation_kernels.cuh"
#include "ops/cuda/eight_bit_product.h"

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Float8_e4m3fn.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

// The activation dtypes the op accepts (check_packed_linear_args): float32, float16, bfloat16.
#define BITTORCH_DISPATCH_ACTIVATION_TYPES(TYPE, NAME, ...)                                  \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)                   \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)                \
                                         AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace bittorch::ops::cuda {
namespace {

// ---- float32 GEMV ----------------------------------------------------------------------

constexpr int kGemvWarps = 8;
constexpr int kOutPerWarp = 2;
// Beyond 4 rows the GEMV's arithmetic costs more than expanding the codes for cuBLAS.
constexpr int64_t kMaxGemvRows = 4;

__device__ __forceinline__ float code_at(uint32_t word, int i) {
  return static_cast<float>(static_cast<int32_t>(word << (30 - 2 * i)) >> 30);
}

// 16 elements, stored with one 16-byte-aligned vector write per 16 bytes.
template <typename T>
struct alignas(16) Pack16 {
  T v[16];
};

// out[m, n] = (sum_k code[n, k] * x[m, k]) * scale[n] + bias[n] for the kRows rows of this
// block's tile. Each warp owns kOutPerWarp output features; lanes read consecutive 16-byte
// chunks of codes (coalesced). x rows are `x_stride` elements apart and padded to whole words
// with zeros; kWordsPerLoad is 4 (16-byte loads, rows of a multiple of 4 words) or 1.
template <int kRows, int kWordsPerLoad>
__global__ void __launch_bounds__(kGemvWarps * 32)
    packed_gemv_kernel(const float* __restrict__ x, int64_t x_stride, int64_t rows,
                       const uint32_t* __restrict__ packed, int64_t words, int64_t out_features,
                       const float* __restrict__ scale, bool per_channel, const float* __restrict__ bias,
                       float* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t n0 = (int64_t{blockIdx.x} * kGemvWarps + threadIdx.x / 32) * kOutPerWarp;
  const int64_t m0 = int64_t{blockIdx.y} * kRows;
  if (n0 >= out_features) return;
  float acc[kOutPerWarp][kRows] = {};
  for (int64_t w0 = int64_t{lane} * kWordsPerLoad; w0 < words; w0 += 32 * kWordsPerLoad) {
    uint32_t code_words[kOutPerWarp][kWordsPerLoad];
#pragma unroll
    for (int o = 0; o < kOutPerWarp; ++o) {
      const int64_t n = min(n0 + o, out_features - 1);  // a missing last row repeats a real one
      if constexpr (kWordsPerLoad == 4) {
        const uint4 v = *reinterpret_cast<const uint4*>(packed + n * words + w0);
        code_words[o][0] = v.x;
        code_words[o][1] = v.y;
        code_words[o][2] = v.z;
        code_words[o][3] = v.w;
      } else {
        code_words[o][0] = packed[n * words + w0];
      }
    }
#pragma unroll
    for (int j = 0; j < kWordsPerLoad; ++j) {
      const int64_t k0 = (w0 + j) * 16;
      float codes[kOutPerWarp][16];
#pragma unroll
      for (int o = 0; o < kOutPerWarp; ++o) {
#pragma unroll
        for (int i = 0; i < 16; ++i) codes[o][i] = code_at(code_words[o][j], i);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (m0 + r >= rows) break;
        const auto* xv = reinterpret_cast<const float4*>(x + (m0 + r) * x_stride + k0);
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const float4 x4 = xv[v];
#pragma unroll
          for (int o = 0; o < kOutPerWarp; ++o) {
            acc[o][r] = fmaf(codes[o][4 * v], x4.x, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 1], x4.y, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 2], x4.z, acc[o][r]);
            acc[o][r] = fmaf(codes[o][4 * v + 3], x4.w, acc[o][r]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int o = 0; o < kOutPerWarp; ++o) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v = acc[o][r];
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffU, v, offset);
      const int64_t n = n0 + o, m = m0 + r;
      if (lane == 0 && n < out_features && m < rows) {
        out[m * out_features + n] = v * scale[per_channel ? n : 0] + (bias != nullptr ? bias[n] : 0.0F);
      }
    }
  }
}

// ---- Tensor-core path (float16 / bfloat16 activations, and 8-bit activations) ----------
//
// mma.sync m16n8k16 with the weights as the A operand (16 output features) and the input
// rows as B (8 rows per n-tile), float32 accumulators. Each lane decodes its own codes into
// A fragments in registers: the K order inside an mma is free as long as A and B agree, so a
// lane takes the four fragment columns it owns from one 32-bit word (16 codes) of its own and
// the matching 16 input elements, and no codes move between lanes. Pair f (f = 0..7) of a word
// is {code f, code f + 8}: both sit at the same bit offset of the two 16-bit halves, so one
// masked XOR turns them into a 16-bit float pair (see CodeDecoder). A warp issues the code
// loads of kStages chunks (16 words of 16 rows) before it decodes the first.
//
// Two kernels share that loop (WarpProduct). Up to 8 rows (packed_mma_kernel): a block owns
// one tile of output features, its warps take interleaved chunks of K and add their partial
// sums through shared memory; the few input rows stay in L1. More rows
// (packed_mma_split_kernel): the warps of a block own different output features over the same
// range of K, whose inputs the block reads once and stages as mma pairs in shared memory, and
// blocks over different ranges of K add their sums into a float32 buffer that a last kernel
// scales.

constexpr int kWordsPerChunk = 16;  // 4 lanes of a row group x 4 words
// Beyond this many rows the expanded operand + cuBLAS (tensor-core GEMM with tiles in shared
// memory) is faster.
constexpr int64_t kMaxMmaRows = 64;

// The mma operand type: bfloat16 activations stay bfloat16; float16 and 8-bit activations
// (int8 and e4m3 values are exact in float16) use float16.
template <typename in_t>
using mma_operand_t = std::conditional_t<std::is_same_v<in_t, c10::BFloat16>, __nv_bfloat16, __half>;

__device__ __forceinline__ uint32_t half_fma_pair(uint32_t a, uint32_t b, uint32_t c) {
  const __half2 r = __hfma2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b),
                            *reinterpret_cast<const __half2*>(&c));
  return *reinterpret_cast<const uint32_t*>(&r);
}

__device__ __forceinline__ uint32_t half_pair(float value) {
  const __half2 r = __float2half2_rn(value);
  return *reinterpret_cast<const uint32_t*>(&r);
}

// (word & mask) ^ bits in one instruction (the compiler splits the C++ form in two).
template <uint32_t kMask>
__device__ __forceinline__ uint32_t mask_xor(uint32_t word, uint32_t bits) {
  uint32_t out;
  asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(out) : "r"(word), "n"(kMask), "r"(bits));
  return out;
}

// Codes to mma pairs. A field u (2 bits) XOR 0b10 gives u' = value + 2 in {1, 2, 3}; a word is
// read at shifts 0, 6 and 12 so that the fields of pairs 0-2, 3-5 and 6-7 sit at mantissa bits
// 2e (e = 0, 1, 2) of both halves.
//
// bfloat16: the exponent of 2^(7 - 2e) makes mantissa bit 2e worth 1, so one masked XOR gives
// 2^(7 - 2e) + 2 + value. The products then carry a term that does not depend on the codes;
// row 15 of every 16-row mma tile is an all-zero word (kHasOffset), whose sums are exactly that
// term, and it is subtracted at the end. Sums stay within float32's exact range for 16-bit
// inputs, not for int8.
// float16 (also 8-bit inputs, whose sums must stay exact): the field is read at base 1024
// (mantissa LSB worth 1), 1024 + u' * 4^e, and one fused multiply-add maps that to the value.
template <typename mma_t>
struct CodeDecoder;

template <>
struct CodeDecoder<__nv_bfloat16> {
  static constexpr bool kHasOffset = true;

  // pairs[f] = {code f, code f + 8} of `word`, plus the offset.
  __device__ __forceinline__ void decode(uint32_t word, uint32_t (&pairs)[8]) const {
    const uint32_t shifted[3] = {word, word >> 6, word >> 12};
    // 2^(7 - 2e) with u' = 2 (a zero code) in both halves, e = 0, 1, 2.
    constexpr uint32_t kZero[3] = {0x43024302U, 0x42084208U, 0x41204120U};
#pragma unroll
    for (int f = 0; f < 8; ++f) {
      const int group = f < 3 ? 0 : (f < 6 ? 1 : 2);
      const int e = f - 3 * group;
      pairs[f] = e == 0   ? mask_xor<0x00030003U>(shifted[group], kZero[0])
                 : e == 1 ? mask_xor<0x000C000CU>(shifted[group], kZero[1])
                          : mask_xor<0x00300030U>(shifted[group], kZero[2]);
    }
  }
};

template <>
struct CodeDecoder<__half> {
  static constexpr bool kHasOffset = false;
  uint32_t scale[3], offset[3];

  __device__ CodeDecoder() {
#pragma unroll
    for (int e = 0; e < 3; ++e) {
      const float s = 1.0F / static_cast<float>(1 << (2 * e));
      scale[e] = half_pair(s);
      offset[e] = half_pair(-(1024.0F * s + 2.0F));
    }
  }

  // pairs[f] = {code f, code f + 8} of `word`.
  __device__ __forceinline__ void decode(uint32_t word, uint32_t (&pairs)[8]) const {
    const uint32_t shifted[3] = {word, word >> 6, word >> 12};
#pragma unroll
    for (int f = 0; f < 8; ++f) {
      const int group = f < 3 ? 0 : (f < 6 ? 1 : 2);
      const int e = f - 3 * group;
      const uint32_t bits = e == 0   ? mask_xor<0x00030003U>(shifted[group], 0x64026402U)
                            : e == 1 ? mask_xor<0x000C000CU>(shifted[group], 0x64086408U)
                                     : mask_xor<0x00300030U>(shifted[group], 0x64206420U);
      pairs[f] = half_fma_pair(bits, scale[e], offset[e]);
    }
  }
};

// Output features of kTiles 16-row mma tiles: one row fewer where row 15 of the first carries
// the decoder's offset.
template <typename in_t, int kTiles = 1>
constexpr int tile_features() {
  return 16 * kTiles - (CodeDecoder<mma_operand_t<in_t>>::kHasOffset ? 1 : 0);
}

// 16 consecutive input elements as loaded (16-byte vectors).
template <typename in_t>
struct InputWord {
  uint4 raw[sizeof(in_t)];
};

// b[f] = {x[f], x[f + 8]} of 16 consecutive elements as mma pairs.
template <typename in_t>
__device__ __forceinline__ void pair_inputs(const InputWord<in_t>& x, uint32_t (&b)[8]) {
  if constexpr (sizeof(in_t) == 2) {
    const uint32_t* low = reinterpret_cast<const uint32_t*>(&x.raw[0]);   // x[0..7]
    const uint32_t* high = reinterpret_cast<const uint32_t*>(&x.raw[1]);  // x[8..15]
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      b[2 * m] = __byte_perm(low[m], high[m], 0x5410);
      b[2 * m + 1] = __byte_perm(low[m], high[m], 0x7632);
    }
  } else {
    const uint32_t* words = reinterpret_cast<const uint32_t*>(&x.raw[0]);  // x[4m .. 4m + 3]
#pragma unroll
    for (int f = 0; f < 8; ++f) {
      const int m = f / 4, j = f % 4;
      if constexpr (std::is_same_v<in_t, int8_t>) {
        // Bytes j of words m and m + 2 into the low bytes of the halves; b + 128 in the low
        // mantissa bits of 1024.0 gives 1024 + 128 + b exactly.
        const uint32_t bytes = __byte_perm(words[m], words[m + 2], j | ((4 + j) << 8));
        b[f] = half_fma_pair((bytes & 0x00FF00FFU) ^ 0x64806480U, half_pair(1.0F), half_pair(-1152.0F));
      } else {
        const uint32_t bytes = __byte_perm(words[m], words[m + 2], j | ((4 + j) << 4));
        const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bytes & 0xFFFFU), __NV_E4M3);
        b[f] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }
}

template <typename mma_t>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                            uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<mma_t, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// Word q (0..3) of lane `quad` in chunk `chunk`: with kStridedWords the four lanes of a row
// group read consecutive words (their inputs are consecutive: fewer cache lines per load of
// many input rows), else each lane reads four consecutive words (one 16-byte code load).
template <bool kStridedWords>
__device__ __forceinline__ int64_t word_index(int64_t chunk, int quad, int q) {
  return chunk * kWordsPerChunk + (kStridedWords ? 4 * q + quad : 4 * quad + q);
}

// Code loads bypass L1 (each code is read once), which then keeps the input rows that every
// block on the multiprocessor reads.
__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t load_streaming(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
}

// What one warp accumulates: kTiles 16-row mma tiles of output features (kFeatures of them
// from first_feature, and the offset row) times kNTiles x 8 input rows (from first_row), over
// chunks [begin, end) of K taken every `step`. x rows are x_stride elements apart, padded with
// zeros to words * 16 columns and 16-byte aligned.
template <typename in_t, int kNTiles, int kStages, int kTiles>
struct WarpProduct {
  using mma_t = mma_operand_t<in_t>;
  // Several n-tiles: the block has staged its inputs as mma pairs in shared memory
  // (stage_inputs); one: each lane reads its row's inputs from global memory (L1).
  static constexpr bool kStagedInputs = kNTiles > 1;
  static constexpr bool kStridedWords = kStagedInputs;
  static constexpr bool kHasOffset = CodeDecoder<mma_t>::kHasOffset;
  // Output features: kTiles mma tiles of 16 rows, less the offset row (row 15 of tile 0).
  static constexpr int kFeatures = tile_features<in_t, kTiles>();
  const uint32_t* code_rows[kTiles][2];  // fragment rows group and group + 8; null: the offset row
  const in_t* x_rows[kNTiles];
  bool has_row[kNTiles];
  float acc[kTiles][kNTiles][4] = {};

  // The feature of fragment row `index` (16 * tile + row) of the warp, -1 for the offset row.
  __device__ __forceinline__ static constexpr int feature_of(int index) {
    return !kHasOffset ? index : (index < 15 ? index : (index == 15 ? -1 : index - 1));
  }

  __device__ WarpProduct(const in_t* x, int64_t x_stride, int64_t rows, int64_t first_row,
                         const uint32_t* packed, int64_t words, int64_t out_features, int64_t first_feature) {
    const int group = threadIdx.x % 32 / 4;
#pragma unroll
    for (int r = 0; r < kTiles; ++r) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // a missing feature repeats a real one; its outputs are not written
        const int feature = feature_of(16 * r + 8 * h + group);
        code_rows[r][h] = feature >= 0 ? packed + min(first_feature + feature, out_features - 1) * words : nullptr;
      }
    }
#pragma unroll
    for (int t = 0; t < kNTiles; ++t) {
      has_row[t] = first_row + 8 * t + group < rows;
      x_rows[t] = x + (has_row[t] ? first_row + 8 * t + group : 0) * x_stride;
    }
  }

  // The four words (64 codes) of this lane in `chunk`; zero past the row, for the offset row
  // and for chunks past the end.
  __device__ __forceinline__ uint4 load_codes(const uint32_t* row, int64_t chunk, bool in_range, int quad,
                                              int64_t words, bool vector_loads) const {
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row == nullptr || !in_range) return v;
    const int64_t first = word_index<kStridedWords>(chunk, quad, 0);
    constexpr int kStep = kStridedWords ? 4 : 1;
    if ((chunk + 1) * kWordsPerChunk <= words) {  // a whole chunk
      if (!kStridedWords && vector_loads) return load_streaming(reinterpret_cast<const uint4*>(row + first));
      v.x = load_streaming(row + first);
      v.y = load_streaming(row + first + kStep);
      v.z = load_streaming(row + first + 2 * kStep);
      v.w = load_streaming(row + first + 3 * kStep);
      return v;
    }
    if (first < words) v.x = load_streaming(row + first);
    if (first + kStep < words) v.y = load_streaming(row + first + kStep);
    if (first + 2 * kStep < words) v.z = load_streaming(row + first + 2 * kStep);
    if (first + 3 * kStep < words) v.w = load_streaming(row + first + 3 * kStep);
    return v;
  }

  // The code loads of kStages chunks are issued before the first of them is decoded. `staged`
  // (kStagedInputs): the pairs of words [begin * 16, end * 16) of the 8 * kNTiles input rows.
  __device__ __forceinline__ void run(int64_t begin, int64_t end, int64_t step, int64_t words, bool vector_loads,
                                      const uint4* staged = nullptr) {
    const CodeDecoder<mma_t> decoder;
    const int quad = threadIdx.x % 4, group = threadIdx.x % 32 / 4;
    const int64_t staged_words = (end - begin) * kWordsPerChunk;
    for (int64_t first = begin; first < end; first += kStages * step) {
      uint4 codes[kStages][kTiles][2];
#pragma unroll
      for (int s = 0; s < kStages; ++s) {
        const int64_t chunk = first + s * step;
#pragma unroll
        for (int r = 0; r < kTiles; ++r) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            codes[s][r][h] = load_codes(code_rows[r][h], chunk, chunk < end, quad, words, vector_loads);
          }
        }
      }
#pragma unroll
      for (int s = 0; s < kStages; ++s) {
        const int64_t chunk = first + s * step;
        if (chunk >= end) break;
        const bool whole_chunk = (chunk + 1) * kWordsPerChunk <= words;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int64_t word = word_index<kStridedWords>(chunk, quad, q);
          uint32_t a[kTiles][2][8];
#pragma unroll
          for (int r = 0; r < kTiles; ++r) {
#pragma unroll
            for (int h = 0; h < 2; ++h) decoder.decode(reinterpret_cast<const uint32_t*>(&codes[s][r][h])[q], a[r][h]);
          }
#pragma unroll
          for (int t = 0; t < kNTiles; ++t) {
            uint32_t b[8];
            if constexpr (kStagedInputs) {
              const uint4* pairs = staged + ((8 * t + group) * staged_words + word - begin * kWordsPerChunk) * 2;
              *reinterpret_cast<uint4*>(&b[0]) = pairs[0];
              *reinterpret_cast<uint4*>(&b[4]) = pairs[1];
            } else {
              InputWord<in_t> input;
              const auto* src = reinterpret_cast<const uint4*>(x_rows[t] + word * 16);
              const bool present = has_row[t] && (whole_chunk || word < words);
#pragma unroll
              for (int v = 0; v < static_cast<int>(sizeof(in_t)); ++v) input.raw[v] = present ? __ldg(src + v) : make_uint4(0, 0, 0, 0);
              pair_inputs<in_t>(input, b);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
              for (int r = 0; r < kTiles; ++r) {
                mma_16x8x16<mma_t>(acc[r][t], a[r][0][2 * i], a[r][1][2 * i], a[r][0][2 * i + 1], a[r][1][2 * i + 1],
                                   b[2 * i], b[2 * i + 1]);
              }
            }
          }
        }
      }
    }
  }

  // Takes the offset row's sums off the others (all lanes must call it). Accumulator i of
  // tile r of a lane: fragment row 16r + group + 8 * (i / 2) (feature first_feature +
  // feature_of(that), if below out_features), input row first_row + 8t + 2 * quad + i % 2.
  __device__ __forceinline__ void remove_offset() {
    if constexpr (kHasOffset) {
      const int offset_lane = 28 + threadIdx.x % 4;  // group 7: accumulators 2, 3 of tile 0 are row 15
#pragma unroll
      for (int t = 0; t < kNTiles; ++t) {
        const float offset[2] = {__shfl_sync(0xffffffffU, acc[0][t][2], offset_lane),
                                 __shfl_sync(0xffffffffU, acc[0][t][3], offset_lane)};
#pragma unroll
        for (int r = 0; r < kTiles; ++r) {
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[r][t][i] -= offset[i % 2];
        }
      }
    }
  }
};

// y = sum (* row_scale[m]) * scale[n] (+ bias[n]) in out_t.
template <typename out_t>
__device__ __forceinline__ out_t scaled_output(float sum, int64_t m, int64_t n, const float* __restrict__ row_scale,
                                               const float* __restrict__ scale, bool per_channel,
                                               const out_t* __restrict__ bias) {
  if (row_scale != nullptr) sum *= row_scale[m];
  sum *= scale[per_channel ? n : 0];
  if (bias != nullptr) sum += static_cast<float>(bias[n]);
  return static_cast<out_t>(sum);
}

// Up to 8 rows: block = one mma tile of output features, warps interleaved over the chunks of K.
// At most 96 registers for one tile per warp: five blocks per multiprocessor (100 gives four).
template <typename in_t, typename out_t, int kWarps, int kStages, int kTiles>
__global__ void __launch_bounds__(kWarps * 32, kTiles == 1 ? 5 : 4)
    packed_mma_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows,
                      const uint32_t* __restrict__ packed, int64_t words, int64_t out_features,
                      bool vector_loads, const float* __restrict__ scale, bool per_channel,
                      const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                      out_t* __restrict__ out) {
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
    out[m * out_features + n] = scaled_output(sum, m, n, row_scale, scale, per_channel, bias);
  }
}

// More rows: block = kWarps mma tiles of output features x 8 * kNTiles input rows x one range
// of K; sums go into `sums` (float32 [rows, out_features], zeroed) by atomic adds.
// blockIdx.x = (feature block * k_splits + k split) * slices + slice: the blocks that read
// the same codes run together, so repeats come from L2.
template <typename in_t, int kNTiles, int kWarps, int kStages>
__global__ void __launch_bounds__(kWarps * 32, 2)
    packed_mma_split_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, int64_t slices,
                            int64_t k_splits, int64_t chunks_per_split, const uint32_t* __restrict__ packed,
                            int64_t words, int64_t out_features, bool vector_loads, float* __restrict__ sums) {
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
    for (int v = 0; v < static_cast<int>(sizeof(in_t)); ++v) input.raw[v] = present ? __ldg(src + v) : make_uint4(0, 0, 0, 0);
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

template <typename out_t>
__global__ void scale_sums_kernel(const float* __restrict__ sums, int64_t rows, int64_t out_features,
                                  const float* __restrict__ row_scale, const float* __restrict__ scale,
                                  bool per_channel, const out_t* __restrict__ bias, out_t* __restrict__ out) {
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < rows * out_features;
       index += int64_t{gridDim.x} * blockDim.x) {
    const int64_t m = index / out_features, n = index % out_features;
    out[index] = scaled_output(sums[index], m, n, row_scale, scale, per_channel, bias);
  }
}

// ---- expanded operand for cuBLAS ---------------------------------------------------------

// The codes of a packed matrix expanded to [out, in]: code * scale[n] in out_t, or for int8 /
// FP8 outputs the code itself. One thread per word (16 codes); rows of a multiple of 16
// columns are written in 16-byte stores.
template <typename out_t>
__device__ __forceinline__ out_t expanded(float code, float scale) {
  if constexpr (std::is_same_v<out_t, int8_t>) {
    return static_cast<int8_t>(code);
  } else if constexpr (std::is_same_v<out_t, c10::Float8_e4m3fn>) {
    return c10::Float8_e4m3fn(code);
  } else {
    return static_cast<out_t>(code * scale);
  }
}

template <typename out_t, bool kWholeWords>
__global__ void expand_packed_kernel(const uint32_t* __restrict__ packed, int64_t words,
                                     int64_t in_features, int64_t total_words,
                                     const float* __restrict__ scale, bool per_channel,
                                     out_t* __restrict__ out) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total_words;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = t / words, w = t % words;
    const uint32_t word = packed[t];
    const float s = scale[per_channel ? n : 0];
    out_t* row = out + n * in_features + w * 16;
    if constexpr (kWholeWords) {
      Pack16<out_t> values;
#pragma unroll
      for (int i = 0; i < 16; ++i) values.v[i] = expanded<out_t>(code_at(word, i), s);
      *reinterpret_cast<Pack16<out_t>*>(row) = values;
    } else {
      for (int i = 0; i < 16 && w * 16 + i < in_features; ++i) row[i] = expanded<out_t>(code_at(word, i), s);
    }
  }
}

template <typename out_t>
at::Tensor expand_packed(const at::Tensor& packed, int64_t in_features, const at::Tensor& scale,
                         at::ScalarType dtype) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  auto out = at::empty({out_features, in_features}, packed.options().dtype(dtype));
  const int64_t total_words = out_features * words;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total_words + threads - 1) / threads,
                                           at::cuda::getCurrentDeviceProperties()->multiProcessorCount * int64_t{32});
  const auto* codes = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  auto* out_data = reinterpret_cast<out_t*>(out.data_ptr());
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (in_features % 16 == 0) {
    expand_packed_kernel<out_t, true><<<blocks, threads, 0, stream>>>(
        codes, words, in_features, total_words, scale.data_ptr<float>(), scale.size(0) > 1, out_data);
  } else {
    expand_packed_kernel<out_t, false><<<blocks, threads, 0, stream>>>(
        codes, words, in_features, total_words, scale.data_ptr<float>(), scale.size(0) > 1, out_data);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

template <int kRows>
void launch_gemv(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                 const float* bias, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const dim3 grid(static_cast<unsigned>((out_features + kGemvWarps * kOutPerWarp - 1) / (kGemvWarps * kOutPerWarp)),
                  static_cast<unsigned>((rows + kRows - 1) / kRows));
  const auto* codes = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto kernel = words % 4 == 0 ? packed_gemv_kernel<kRows, 4> : packed_gemv_kernel<kRows, 1>;
  kernel<<<grid, kGemvWarps * 32, 0, stream>>>(x.data_ptr<float>(), x.size(1), rows, codes, words, out_features,
                                               scale.data_ptr<float>(), scale.size(0) > 1, bias,
                                               out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void gemv(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
          const float* bias, at::Tensor& out) {
  if (rows == 1) return launch_gemv<1>(x, rows, packed, scale, bias, out);
  if (rows == 2) return launch_gemv<2>(x, rows, packed, scale, bias, out);
  launch_gemv<4>(x, rows, packed, scale, bias, out);
}

template <typename in_t, typename out_t, int kTiles, int kStages>
void small_batch_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                         const float* row_scale, const out_t* bias, at::Tensor& out) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  constexpr int kWarps = 4;
  constexpr int kFeatures = tile_features<in_t, kTiles>();
  packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles>
      <<<static_cast<unsigned>((out_features + kFeatures - 1) / kFeatures), kWarps * 32, 0,
         at::cuda::getCurrentCUDAStream()>>>(
          reinterpret_cast<const in_t*>(x.data_ptr()), x.size(1), rows,
          reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()), words, out_features, words % 4 == 0,
          scale.data_ptr<float>(), scale.size(0) > 1, row_scale, bias, out.data_ptr<out_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename in_t, typename out_t, int kNTiles>
void split_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                   const float* row_scale, const out_t* bias, at::Tensor& out) {
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
  packed_mma_split_kernel<in_t, kNTiles, kWarps, kStages>
      <<<static_cast<unsigned>(feature_blocks * k_splits * slices), kWarps * 32,
         static_cast<size_t>(chunks_per_split * kStagedBytesPerChunk), stream>>>(
          reinterpret_cast<const in_t*>(x.data_ptr()), x.size(1), rows, slices, k_splits, chunks_per_split,
          reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()), words, out_features, words % 4 == 0,
          sums.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t outputs = rows * out_features;
  scale_sums_kernel<out_t><<<static_cast<unsigned>(std::min<int64_t>((outputs + 255) / 256, wanted_blocks * 4)), 256, 0, stream>>>(
      sums.data_ptr<float>(), rows, out_features, row_scale, scale.data_ptr<float>(), scale.size(0) > 1, bias,
      out.data_ptr<out_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Up to 8 rows: packed_mma_kernel (small_batch_product). More: packed_mma_split_kernel with 16 rows per slice (32
// beyond 16 rows; each decoded fragment serves every n-tile) and enough splits of K for about
// four blocks per multiprocessor, then scale_sums_kernel.
template <typename in_t, typename out_t>
void tensor_core_product(const at::Tensor& x, int64_t rows, const at::Tensor& packed, const at::Tensor& scale,
                         const at::Tensor& row_scale, const out_t* bias, at::Tensor& out) {
  const int64_t out_features = packed.size(0);
  const float* row_scale_data = row_scale.defined() ? row_scale.data_ptr<float>() : nullptr;
  if (rows <= 8) {
    // Two tiles per warp share each input fragment, but halve the blocks: only where there
    // are still about six blocks per multiprocessor.
    const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    if (out_features >= 6 * multiprocessors * tile_features<in_t, 2>()) {
      return small_batch_product<in_t, out_t, 2, 2>(x, rows, packed, scale, row_scale_data, bias, out);
    }
    return small_batch_product<in_t, out_t, 1, 3>(x, rows, packed, scale, row_scale_data, bias, out);
  }
  if (rows <= 16) return split_product<in_t, out_t, 2>(x, rows, packed, scale, row_scale_data, bias, out);
  split_product<in_t, out_t, 4>(x, rows, packed, scale, row_scale_data, bias, out);
}

// out = x @ codes^T * scale (* row_scale) + bias with the kernel of the activations' format
// and dtype.
template <typename out_t>
void packed_product(quant::ActivationFormat format, const at::Tensor& x, int64_t rows, const at::Tensor& packed,
                    const at::Tensor& scale, const at::Tensor& row_scale, const out_t* bias, at::Tensor& out) {
  if (format == quant::ActivationFormat::Int8) {
    tensor_core_product<int8_t, out_t>(x, rows, packed, scale, row_scale, bias, out);
  } else if (format == quant::ActivationFormat::Float8E4M3) {
    tensor_core_product<c10::Float8_e4m3fn, out_t>(x, rows, packed, scale, row_scale, bias, out);
  } else if constexpr (std::is_same_v<out_t, float>) {
    gemv(x, rows, packed, scale, bias, out);
  } else {
    tensor_core_product<out_t, out_t>(x, rows, packed, scale, row_scale, bias, out);
  }
}

// The kernels read whole words of 16 elements in 16-byte loads: `rows` itself where it has
// that layout, else a copy padded with zeros.
at::Tensor word_aligned_rows(const at::Tensor& rows, int64_t words) {
  const int64_t columns = words * quant::kCodesPerWord;
  if (rows.size(1) == columns && rows.is_contiguous() && reinterpret_cast<uintptr_t>(rows.data_ptr()) % 16 == 0) {
    return rows;
  }
  at::Tensor padded = at::zeros({rows.size(0), columns}, rows.options());
  padded.narrow(1, 0, rows.size(1)).copy_(rows);
  return padded;
}

at::Tensor packed_ternary_linear_cuda(const at::Tensor& input, const at::Tensor& packed_in,
                                      const at::Tensor& scale_in, const std::optional<at::Tensor>& bias,
                                      int64_t in_features, c10::string_view activation_format) {
  const auto format = check_packed_linear_args("bittorch::packed_ternary_linear", input, packed_in,
                                               scale_in, bias, in_features, activation_format);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor packed = packed_in.contiguous(), scale = scale_in.contiguous();
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const at::Tensor rows_in = input.reshape({-1, in_features});
  const int64_t rows = rows_in.size(0);
  const auto dtype = input.scalar_type();
  const auto out_shape = linear_output_shape(input, out_features);
  const bool eight_bit = format != quant::ActivationFormat::None;
  const bool tensor_cores = eight_bit || dtype != at::kFloat;
  if (rows > (tensor_cores ? kMaxMmaRows : kMaxGemvRows)) {
    if (eight_bit) {
      const auto [values, input_scale] = quantize_activation_rows(rows_in, format);
      const at::Tensor codes = format == quant::ActivationFormat::Int8
                                   ? expand_packed<int8_t>(packed, in_features, scale, at::kChar)
                                   : expand_packed<c10::Float8_e4m3fn>(packed, in_features, scale, at::kFloat8_e4m3fn);
      return eight_bit_product(values, input_scale, codes, scale, bias, format, dtype).view(out_shape);
    }
    at::Tensor operand;
    BITTORCH_DISPATCH_ACTIVATION_TYPES(dtype, "bittorch_expand_packed", [&] {
      operand = expand_packed<scalar_t>(packed, in_features, scale, dtype);
    });
    return at::linear(rows_in, operand, bias).view(out_shape);
  }
  at::Tensor out = at::empty({rows, out_features}, input.options());
  if (rows == 0) return out.view(out_shape);
  at::Tensor x, row_scale;
  if (eight_bit) {
    auto [values, input_scale] = quantize_activation_rows(rows_in, format);
    x = word_aligned_rows(values, words);
    row_scale = input_scale;
  } else {
    x = word_aligned_rows(rows_in, words);
  }
  // The kernels read the bias as a dense vector: a strided one (a view) is copied first.
  const at::Tensor dense_bias = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  BITTORCH_DISPATCH_ACTIVATION_TYPES(dtype, "bittorch_packed_linear", [&] {
    const scalar_t* bias_data = dense_bias.defined() ? dense_bias.data_ptr<scalar_t>() : nullptr;
    packed_product<scalar_t>(format, x, rows, packed, scale, row_scale, bias_data, out);
  });
  return out.view(out_shape);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_cuda);
}

}  // namespace bittorch::ops::cuda
