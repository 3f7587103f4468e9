#pragma once

// The tensor-core product shared by the mma (mma.cu) and split-K (split_k.cu) kernels of
// packed_ternary_linear: float16 / bfloat16 activations, and 8-bit activations.
//
#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/packed_codes.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bittorch::ops::cuda {

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

// The feature of fragment row `index` (16 * tile + row) of a warp's tiles, -1 for the offset
// row (row 15 of the first tile, where the decoder has one).
template <typename in_t>
__device__ __forceinline__ constexpr int tile_feature_of(int index) {
  if constexpr (!CodeDecoder<mma_operand_t<in_t>>::kHasOffset) return index;
  return index < 15 ? index : (index == 15 ? -1 : index - 1);
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

// The fields of the 16 codes of `word`, one per byte in K order: byte i of fields[b] is the
// 2-bit field of code 4b + i (00, 01 or 11).
__device__ __forceinline__ void code_fields(uint32_t word, uint32_t (&fields)[4]) {
  uint32_t f[4];  // byte b of f[j]: the field of code 4b + j
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = (word >> (2 * j)) & 0x03030303U;
  const uint32_t low01 = __byte_perm(f[0], f[1], 0x5140), low23 = __byte_perm(f[2], f[3], 0x5140);
  const uint32_t high01 = __byte_perm(f[0], f[1], 0x7362), high23 = __byte_perm(f[2], f[3], 0x7362);
  fields[0] = __byte_perm(low01, low23, 0x5410);
  fields[1] = __byte_perm(low01, low23, 0x7632);
  fields[2] = __byte_perm(high01, high23, 0x5410);
  fields[3] = __byte_perm(high01, high23, 0x7632);
}

// The operand bits of one code field per byte (8-bit types) or per 16-bit half.
template <typename in_t>
__device__ __forceinline__ uint32_t operand_bits(uint32_t fields) {
  if constexpr (std::is_same_v<in_t, int8_t>) {
    return fields | ((fields & 0x02020202U) * 0x7EU);  // 11 -> 0xFF
  } else if constexpr (std::is_same_v<in_t, c10::Float8_e4m3fn>) {
    return ((fields & 0x01010101U) * 0x38U) | ((fields & 0x02020202U) << 6);  // 1.0 = 0x38, sign 0x80
  } else {
    constexpr uint32_t kOne = std::is_same_v<in_t, c10::BFloat16> ? 0x3F80U : 0x3C00U;
    return ((fields & 0x00010001U) * kOne) | ((fields & 0x00020002U) << 14);
  }
}

template <typename in_t>
using sum_t = std::conditional_t<std::is_same_v<in_t, int8_t>, int32_t, float>;

// c += a * b on one 16 x 8 tile and 32 bytes of K.
template <typename in_t>
__device__ __forceinline__ void mma_tile(sum_t<in_t> (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<in_t, int8_t>) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else if constexpr (std::is_same_v<in_t, c10::Float8_e4m3fn>) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // the host runs e4m3 here only on FP8 tensor cores
#endif
  } else {
    mma_16x8x16<mma_operand_t<in_t>>(c, a[0], a[1], a[2], a[3], b0, b1);
  }
}

// acc[r][t] += one word of K (four m16n8k16): tile r's decoded code pairs a[r][fragment row
// group, group + 8][8] times the 8 input rows' pairs b[8] (pair_inputs) of n-tile t.
template <typename mma_t, int kTiles, int kNTiles>
__device__ __forceinline__ void multiply_word(float (&acc)[kTiles][kNTiles][4], int t,
                                              const uint32_t (&a)[kTiles][2][8], const uint32_t (&b)[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int r = 0; r < kTiles; ++r) {
      mma_16x8x16<mma_t>(acc[r][t], a[r][0][2 * i], a[r][1][2 * i], a[r][0][2 * i + 1], a[r][1][2 * i + 1], b[2 * i],
                         b[2 * i + 1]);
    }
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

// Takes the offset row's sums off the accumulators of kTiles mma tiles x kNTiles n-tiles of
// codes decoded for mma_t (all lanes must call it). Accumulator i of tile r of a lane:
// fragment row 16r + group + 8 * (i / 2), input row 8t + 2 * quad + i % 2.
template <typename mma_t, int kTiles, int kNTiles>
__device__ __forceinline__ void remove_code_offset(float (&acc)[kTiles][kNTiles][4]) {
  if constexpr (CodeDecoder<mma_t>::kHasOffset) {
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

// What one warp accumulates: kTiles 16-row mma tiles of output features (kFeatures of them
// from first_feature, and the offset row) times kNTiles x 8 input rows (from first_row), over
// chunks [begin, end) of K taken every `step`. x rows are x_stride elements apart, padded with
// zeros to words * 16 columns and 16-byte aligned.
// kSharedRows (one n-tile): the x rows are in shared memory (the normed rows of the mma
// kernel's prologue), read with plain loads rather than through the read-only cache.
template <typename in_t, int kNTiles, int kStages, int kTiles, bool kSharedRows = false>
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
  uint4 codes[kStages][kTiles][2];  // the stage of code loads in flight

  __device__ __forceinline__ static constexpr int feature_of(int index) { return tile_feature_of<in_t>(index); }

  __device__ WarpProduct(const in_t* x, int64_t x_stride, int64_t rows, int64_t first_row, const uint32_t* packed,
                         int64_t words, int64_t out_features, int64_t first_feature) {
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

  // Issues the code loads of the kStages chunks from `first` (every `step`, below `end`).
  __device__ __forceinline__ void load_stage(int64_t first, int64_t end, int64_t step, int64_t words,
                                             bool vector_loads) {
    const int quad = threadIdx.x % 4;
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
  }

  // The code loads of kStages chunks are issued before the first of them is decoded; with
  // `first_stage_loaded`, load_stage(begin, ...) has issued the first stage's already (a kernel
  // does it before it waits for the kernel before it: codes are constants). `staged`
  // (kStagedInputs): the pairs of words [begin * 16, end * 16) of the 8 * kNTiles input rows.
  __device__ __forceinline__ void run(int64_t begin, int64_t end, int64_t step, int64_t words, bool vector_loads,
                                      const uint4* staged = nullptr, bool first_stage_loaded = false) {
    const CodeDecoder<mma_t> decoder;
    const int quad = threadIdx.x % 4, group = threadIdx.x % 32 / 4;
    const int64_t staged_words = (end - begin) * kWordsPerChunk;
    for (int64_t first = begin; first < end; first += kStages * step) {
      if (!first_stage_loaded || first != begin) load_stage(first, end, step, words, vector_loads);
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
              for (int v = 0; v < static_cast<int>(sizeof(in_t)); ++v)
                input.raw[v] = !present ? make_uint4(0, 0, 0, 0) : (kSharedRows ? src[v] : __ldg(src + v));
              pair_inputs<in_t>(input, b);
            }
            multiply_word<mma_t>(acc, t, a, b);
          }
        }
      }
    }
  }

  // Takes the offset row's sums off the others (all lanes must call it). Accumulator i of
  // tile r of a lane: fragment row 16r + group + 8 * (i / 2) (feature first_feature +
  // feature_of(that), if below out_features), input row first_row + 8t + 2 * quad + i % 2.
  __device__ __forceinline__ void remove_offset() {
    remove_code_offset<mma_t>(acc);
  }
};

// y = sum (* row_scale[m]) * scale[n] (+ bias[n]), then the epilogue, in out_t. The product
// and the bias are rounded apart (__fmul_rn, __fadd_rn): left to the compiler, the two might be
// one fused multiply-add in one kernel and not in another, and kernels that multiply the same
// rows would round their outputs differently.
template <typename out_t>
__device__ __forceinline__ out_t scaled_output(float sum, int64_t m, int64_t n, const float* __restrict__ row_scale,
                                               const float* __restrict__ scale, bool per_channel,
                                               const out_t* __restrict__ bias, bool squared_relu) {
  if (row_scale != nullptr) sum = __fmul_rn(sum, row_scale[m]);
  sum = __fmul_rn(sum, scale[per_channel ? n : 0]);
  if (bias != nullptr) sum = __fadd_rn(sum, static_cast<float>(bias[n]));
  return static_cast<out_t>(apply_packed_epilogue(sum, squared_relu));
}

// out = sums (* row_scale[m]) * scale[n] (+ bias[n]): the last pass of the kernels that add
// partial sums of ranges of K (float32 sums, or int32 for int8 activations). sums holds
// `splits` buffers of rows x out_features, added in order (the same result on every run).
template <typename sum_t, typename out_t>
__global__ void scale_sums_kernel(const sum_t* __restrict__ sums, int64_t splits, int64_t rows, int64_t out_features,
                                  const float* __restrict__ row_scale, const float* __restrict__ scale,
                                  bool per_channel, const out_t* __restrict__ bias, bool squared_relu,
                                  out_t* __restrict__ out) {
  wait_for_prior_grid_and_allow_next();
  const int64_t outputs = rows * out_features;
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < outputs;
       index += int64_t{gridDim.x} * blockDim.x) {
    const int64_t m = index / out_features, n = index % out_features;
    float sum = static_cast<float>(sums[index]);
    for (int64_t s = 1; s < splits; ++s) sum += static_cast<float>(sums[s * outputs + index]);
    out[index] = scaled_output(sum, m, n, row_scale, scale, per_channel, bias, squared_relu);
  }
}

template <typename out_t, typename sum_t>
void scale_sums(const sum_t* sums, int64_t rows, int64_t out_features, const float* row_scale, const at::Tensor& scale,
                const out_t* bias, bool squared_relu, at::Tensor& out, int64_t splits = 1) {
  const int64_t outputs = rows * out_features;
  const int64_t max_blocks = 16 * int64_t{at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
  launch_dependent(scale_sums_kernel<sum_t, out_t>,
                   dim3(static_cast<unsigned>(std::min<int64_t>((outputs + 255) / 256, max_blocks))), dim3(256), 0,
                   at::cuda::getCurrentCUDAStream(), sums, splits, rows, out_features, row_scale,
                   scale.data_ptr<float>(), scale.size(0) > 1, bias, squared_relu, out.data_ptr<out_t>());
}

// Calls f(in_t{}, out_t{}, bias) with the kernel types of p's input and output dtypes and p's
// bias (null if none): a 16-bit input gives an output of its own dtype; 8-bit values any of
// float32, float16, bfloat16.
template <typename F>
void dispatch_packed_product(const PackedProduct& p, const char* name, F&& f) {
  const auto with_bias = [&](auto in_tag, auto out_tag) {
    using out_t = decltype(out_tag);
    return f(in_tag, out_tag, p.bias.defined() ? p.bias.data_ptr<out_t>() : static_cast<const out_t*>(nullptr));
  };
  const auto with_any_output = [&](auto in_tag) {
    switch (p.out.scalar_type()) {
      case at::kFloat:
        return with_bias(in_tag, float{});
      case at::kHalf:
        return with_bias(in_tag, c10::Half{});
      case at::kBFloat16:
        return with_bias(in_tag, c10::BFloat16{});
      default:
        TORCH_CHECK(false, name, ": outputs are float32, float16 or bfloat16, not ", p.out.scalar_type());
    }
  };
  switch (p.x.scalar_type()) {
    case at::kChar:
      return with_any_output(int8_t{});
    case at::kFloat8_e4m3fn:
      return with_any_output(c10::Float8_e4m3fn{});
    case at::kHalf:
      return with_bias(c10::Half{}, c10::Half{});
    case at::kBFloat16:
      return with_bias(c10::BFloat16{}, c10::BFloat16{});
    default:
      TORCH_CHECK(false, name, ": the tensor-core kernels take float16, bfloat16, int8 or float8_e4m3fn inputs, not ",
                  p.x.scalar_type());
  }
}

}  // namespace bittorch::ops::cuda
