// CPU kernel of bittorch::packed_ternary_linear: for edge devices without a GPU. Output rows
// are spread over threads with at::parallel_for; each packed row is decoded once per pass
// and applied to up to kRowsPerPass input rows, or, from kGemmMinRows input rows on, decoded
// once per tile to float32 for the BLAS. AVX2 where the CPU has it (checked at run
// time), a portable loop elsewhere.

#include "ops/common/checks.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"
#include "ops/reference/reference.h"

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bittorch::ops {
namespace {

constexpr int64_t kRowsPerPass = 8;

// The code in bits 2i, 2i + 1 of `word`, sign-extended: 00 -> 0, 01 -> 1, 11 -> -1.
inline int code_at(uint32_t word, int i) {
  return static_cast<int32_t>(word << (30 - 2 * i)) >> 30;
}

// sums[m] = sum_k code[k] * x[m][k] over one packed row of `words` words, for `rows` input
// rows `stride` floats apart (each padded to words * 16 with zeros). Every code multiplies its
// input, zeros included, so that NaN and Inf inputs propagate as in the unpacked layer
// (0 * Inf is NaN); the products are exact, so this equals a masked sum for finite inputs.
void dot_rows_portable(const uint32_t* codes, int64_t words, const float* x, int64_t stride, int64_t rows,
                       float* sums) {
  for (int64_t m = 0; m < rows; ++m) sums[m] = 0.0F;
  for (int64_t w = 0; w < words; ++w) {
    const uint32_t word = codes[w];
    for (int i = 0; i < 16; ++i) {
      const auto code = static_cast<float>(code_at(word, i));
      for (int64_t m = 0; m < rows; ++m) sums[m] += code * x[m * stride + w * 16 + i];
    }
  }
}

// Packed rows decoded to float32 codes (-1, 0, +1), `words` * 16 per row, into `out`.
void decode_rows_portable(const uint32_t* codes, int64_t words, int64_t rows, float* out) {
  for (int64_t i = 0; i < rows * words; ++i) {
    for (int k = 0; k < 16; ++k) out[i * 16 + k] = static_cast<float>(code_at(codes[i], k));
  }
}

#if defined(__x86_64__)
// Codes 0-7 (half 0) or 8-15 (half 1) of a packed word broadcast to every lane, as floats -1,
// 0 or +1: each lane's field moved to the top two bits by a variable shift, and shifted back
// with the sign.
__attribute__((target("avx2"))) inline __m256 eight_codes(__m256i word, int half) {
  const __m256i left =
      half == 0 ? _mm256_setr_epi32(30, 28, 26, 24, 22, 20, 18, 16) : _mm256_setr_epi32(14, 12, 10, 8, 6, 4, 2, 0);
  return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_sllv_epi32(word, left), 30));
}

// Eight codes of a word (`word` broadcast to every lane; `half` as eight_codes) times each
// input row's eight activations at `column`, added to chain `chain` of the row's accumulators.
// Each code multiplies its input, as in dot_rows_portable.
template <int kRows, int kChains>
__attribute__((target("avx2,fma"))) inline void accumulate_codes(__m256i word, int half, const float* x, int64_t stride,
                                                                 int64_t column, int chain,
                                                                 __m256 (&acc)[kRows][kChains]) {
  const __m256 code = eight_codes(word, half);
  for (int m = 0; m < kRows; ++m) {
    const __m256 v = _mm256_loadu_ps(x + m * stride + column);
    // One rounding either way: the product of a code and an input is exact.
    acc[m][chain] = _mm256_fmadd_ps(v, code, acc[m][chain]);
  }
}

// Each row's sum is split over kChains accumulators, so that the additions of a pass do not
// wait on one another: one row alone would otherwise be bound by the latency of one chain of
// vector adds.
template <int kRows>
__attribute__((target("avx2,fma"))) void dot_rows_avx2(const uint32_t* codes, int64_t words, const float* x,
                                                       int64_t stride, float* sums) {
  constexpr int kChains = kRows >= 4 ? 1 : 4 / kRows;
  constexpr int kWordsPerGroup = kChains >= 2 ? kChains / 2 : 1;  // two halves of 8 codes per word
  __m256 acc[kRows][kChains];
  for (int m = 0; m < kRows; ++m) {
    for (int c = 0; c < kChains; ++c) acc[m][c] = _mm256_setzero_ps();
  }
  const auto word_at = [codes](int64_t w) { return static_cast<int32_t>(codes[w]); };
  int64_t w = 0;
  for (; w + kWordsPerGroup <= words; w += kWordsPerGroup) {
    for (int g = 0; g < kWordsPerGroup; ++g) {
      const __m256i word = _mm256_set1_epi32(word_at(w + g));
      accumulate_codes(word, 0, x, stride, (w + g) * 16, (2 * g) % kChains, acc);
      accumulate_codes(word, 1, x, stride, (w + g) * 16 + 8, (2 * g + 1) % kChains, acc);
    }
  }
  for (; w < words; ++w) {
    const __m256i word = _mm256_set1_epi32(word_at(w));
    accumulate_codes(word, 0, x, stride, w * 16, 0, acc);
    accumulate_codes(word, 1, x, stride, w * 16 + 8, 1 % kChains, acc);
  }
  for (int m = 0; m < kRows; ++m) {
    __m256 total = acc[m][0];
    for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[m][c]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, total);
    sums[m] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  }
}

__attribute__((target("avx2"))) void decode_rows_avx2(const uint32_t* codes, int64_t words, int64_t rows, float* out) {
  for (int64_t i = 0; i < rows * words; ++i) {
    const __m256i word = _mm256_set1_epi32(static_cast<int32_t>(codes[i]));
    _mm256_storeu_ps(out + i * 16, eight_codes(word, 0));
    _mm256_storeu_ps(out + i * 16 + 8, eight_codes(word, 1));
  }
}

template <int... kRows>
constexpr auto avx2_table(std::integer_sequence<int, kRows...>) {
  return std::array<void (*)(const uint32_t*, int64_t, const float*, int64_t, float*), sizeof...(kRows)>{
      &dot_rows_avx2<kRows + 1>...};
}

// Where activation k of a row goes in dot_int8_avx2's layout (below).
inline int64_t int8_position(int64_t k, int64_t blocks) {
  const int64_t block = k / 128, within = k % 128;
  return block < blocks ? block * 128 + (within % 4) * 32 + within / 4 : k;
}

// The sum of eight int32 lanes (exact, so in any order).
__attribute__((target("avx2"))) inline int32_t sum_of_lanes(__m256i v) {
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  int32_t sum = 0;
  for (const int32_t lane : lanes) sum += lane;
  return sum;
}

// INT8 activations (W1.58A8), the bitnet.cpp way: 128 codes (32 bytes) at a time are split by
// shifts into four vectors of 2-bit fields, mapped by a byte shuffle to code + 1 (0, 1 or 2,
// unsigned) and multiplied with the activations by maddubs; the sums, exact in integers, are
// then sum(code * x) + sum(x), so `block_sum` (the activations' sum over the whole blocks)
// is subtracted. The four vectors hold codes 4j + f of the block (f = 0..3), so each row of
// activations is laid out that way (position f * 32 + j of a block holds activation 4j + f);
// the words after the last whole block follow in their own order.
__attribute__((target("avx2"))) int32_t dot_int8_avx2(const uint8_t* code_bytes, int64_t blocks, int64_t tail_words,
                                                      const int8_t* x, int32_t block_sum) {
  const __m256i field_mask = _mm256_set1_epi8(3);
  // Field 00 -> 0 + 1, 01 -> 1 + 1, 11 -> -1 + 1 (10 never occurs in a valid matrix).
  const __m256i to_code_plus_one =
      _mm256_setr_epi8(1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  // Pair sums (|(c0 + 1) x0 + (c1 + 1) x1| <= 508) add up in int16 for 16 blocks (64 of them:
  // at most 32,512), then widen to int32 once.
  constexpr int64_t kBlocksPerWidening = 16;
  for (int64_t first = 0; first < blocks; first += kBlocksPerWidening) {
    __m256i pairs = _mm256_setzero_si256();
    const int64_t last = std::min(blocks, first + kBlocksPerWidening);
    for (int64_t b = first; b < last; ++b) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(code_bytes + b * 32));
      for (int f = 0; f < 4; ++f) {
        const __m256i fields = _mm256_and_si256(_mm256_srli_epi16(bytes, 2 * f), field_mask);
        const __m256i codes = _mm256_shuffle_epi8(to_code_plus_one, fields);
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + (b * 4 + f) * 32));
        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(codes, xv));
      }
    }
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones16));
  }
  int32_t sum = sum_of_lanes(acc) - block_sum;
  const auto* tail = reinterpret_cast<const uint32_t*>(code_bytes + blocks * 32);
  const int8_t* x_tail = x + blocks * 128;
  for (int64_t w = 0; w < tail_words; ++w) {
    for (int i = 0; i < 16; ++i) sum += code_at(tail[w], i) * x_tail[w * 16 + i];
  }
  return sum;
}

// The sum of a row's activations over its `blocks` whole blocks (dot_int8_avx2's correction).
__attribute__((target("avx2"))) int32_t block_sum_avx2(const int8_t* x, int64_t blocks) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int64_t v = 0; v < blocks * 4; ++v) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + v * 32));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xv), ones16));
  }
  return sum_of_lanes(acc);
}

// Eight activations divided by the row's scale (a division, not a multiplication by the
// reciprocal), rounded half to even and clamped to +-max_code, as the reference; a non-finite
// quotient (x - x is not 0) becomes 0.
__attribute__((target("avx2"))) inline __m256i quantize8(const float* x, __m256 scale, __m256 low, __m256 high) {
  const __m256 scaled = _mm256_div_ps(_mm256_loadu_ps(x), scale);
  const __m256 finite = _mm256_cmp_ps(_mm256_sub_ps(scaled, scaled), _mm256_setzero_ps(), _CMP_EQ_OQ);
  const __m256 rounded = _mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtps_epi32(_mm256_and_ps(_mm256_min_ps(_mm256_max_ps(rounded, low), high), finite));
}

// One row of activations quantized to int8 as quantize_activations_reference does (the same
// float operations in the same order per element: the same values and scale), written in
// dot_int8_avx2's layout (`blocks` whole blocks of 128 permuted, the rest in order); returns
// the row's scale. Eight elements at a time: at batch 1 this is the serial part of the layer.
__attribute__((target("avx2"))) float quantize_row_int8_avx2(const float* row, int64_t in_features, int64_t blocks,
                                                             float max_code, int8_t* out) {
  // NaN-propagating, as the reference's amax and clamp_min: a NaN or +-Inf makes the row's
  // scale non-finite, its values 0 and its outputs NaN.
  const __m256 sign = _mm256_set1_ps(-0.0F);
  __m256 vector_max = _mm256_setzero_ps();
  __m256 any_nan = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= in_features; k += 8) {
    const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(row + k));
    any_nan = _mm256_or_ps(any_nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    vector_max = _mm256_max_ps(vector_max, a);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vector_max);
  float absmax = 0.0F;
  for (const float lane : lanes) absmax = std::max(absmax, lane);
  if (_mm256_movemask_ps(any_nan) != 0) absmax = std::numeric_limits<float>::quiet_NaN();
  for (; k < in_features; ++k) {
    const float a = std::abs(row[k]);
    if (std::isnan(a) || a > absmax) absmax = a;
  }
  const float row_scale = std::max(absmax, kMinActivationAbsMax) / max_code;  // keeps a NaN

  const __m256 scale = _mm256_set1_ps(row_scale);
  const __m256 high = _mm256_set1_ps(max_code), low = _mm256_set1_ps(-max_code);
  // Within a block, activation 4j + f goes to f * 32 + j: 32 activations (j = 8u .. 8u + 7)
  // at a time, packed to bytes, transposed 4 x 4 within each 128-bit lane, the lanes'
  // bytes interleaved, and 8 bytes stored for each f.
  const __m256i transpose = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9,
                                             13, 2, 6, 10, 14, 3, 7, 11, 15);
  const int64_t whole_blocks = std::min(blocks, in_features / 128);
  for (int64_t b = 0; b < whole_blocks; ++b) {
    for (int64_t u = 0; u < 4; ++u) {
      const float* x = row + b * 128 + u * 32;
      // Lane 0: activations 0-3, 8-11, 16-19, 24-27 (j = 0, 2, 4, 6); lane 1: j = 1, 3, 5, 7.
      const __m256i bytes = _mm256_packs_epi16(
          _mm256_packs_epi32(quantize8(x, scale, low, high), quantize8(x + 8, scale, low, high)),
          _mm256_packs_epi32(quantize8(x + 16, scale, low, high), quantize8(x + 24, scale, low, high)));
      const __m256i by_field = _mm256_shuffle_epi8(bytes, transpose);
      const __m128i even_j = _mm256_castsi256_si128(by_field), odd_j = _mm256_extracti128_si256(by_field, 1);
      const __m128i fields01 = _mm_unpacklo_epi8(even_j, odd_j), fields23 = _mm_unpackhi_epi8(even_j, odd_j);
      int8_t* dst = out + b * 128 + u * 8;
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), fields01);
      _mm_storeh_pd(reinterpret_cast<double*>(dst + 32), _mm_castsi128_pd(fields01));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 64), fields23);
      _mm_storeh_pd(reinterpret_cast<double*>(dst + 96), _mm_castsi128_pd(fields23));
    }
  }
  for (k = whole_blocks * 128; k < in_features; ++k) {
    const float scaled = row[k] / row_scale;
    const float q = std::isfinite(scaled) ? std::min(std::max(std::nearbyint(scaled), -max_code), max_code) : 0.0F;
    out[int8_position(k, blocks)] = static_cast<int8_t>(q);
  }
  return row_scale;
}

// BITTORCH_NO_AVX2=1 forces the portable loop (the tests run both).
const bool kHasAvx2 =
    __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && std::getenv("BITTORCH_NO_AVX2") == nullptr;
#endif

void dot_rows(const uint32_t* codes, int64_t words, const float* x, int64_t stride, int64_t rows, float* sums) {
#if defined(__x86_64__)
  if (kHasAvx2) {
    static constexpr auto table = avx2_table(std::make_integer_sequence<int, kRowsPerPass>{});
    table[rows - 1](codes, words, x, stride, sums);
    return;
  }
#endif
  dot_rows_portable(codes, words, x, stride, rows, sums);
}

void decode_rows(const uint32_t* codes, int64_t words, int64_t rows, float* out) {
#if defined(__x86_64__)
  if (kHasAvx2) {
    decode_rows_avx2(codes, words, rows, out);
    return;
  }
#endif
  decode_rows_portable(codes, words, rows, out);
}

// How the sum of output (m, n) becomes that output, for every path of this kernel: scaled as
// scale_accumulator scales it (the same float operations in the same order, so the same
// values), then the epilogue; the caller rounds it to the output dtype.
struct OutputScaling {
  const float* input_scale;   // [rows] with 8-bit activations, else null
  const float* weight_scale;  // [out_features], or [1] when not per channel
  bool per_channel;
  const float* bias;  // [out_features] in float32, or null
  bool squared_relu;

  float operator()(float sum, int64_t m, int64_t n) const {
    float y = sum;
    if (input_scale != nullptr) y = y * input_scale[m];
    y = y * weight_scale[per_channel ? n : 0];
    if (bias != nullptr) y = y + bias[n];
    return apply_packed_epilogue(y, squared_relu);
  }
};

// The float32 weight scale and bias an OutputScaling reads, kept alive by the caller.
struct ScalingTensors {
  at::Tensor weight_scale, bias;
  ScalingTensors(const at::Tensor& scale, const std::optional<at::Tensor>& bias_in)
      : weight_scale(scale.to(at::kFloat).contiguous()),
        bias(bias_in.has_value() && bias_in->defined() ? bias_in->to(at::kFloat).contiguous() : at::Tensor()) {}
  OutputScaling scaling(const float* input_scale, bool squared_relu) const {
    return {input_scale, weight_scale.data_ptr<float>(), weight_scale.numel() > 1,
            bias.defined() ? bias.data_ptr<float>() : nullptr, squared_relu};
  }
};

// Output features per task of the passes: about kCodesPerTask products each, so that a layer
// too small to share out is not forked over every thread (a fork and join of 16 threads costs
// more than the 2-3 microseconds that many products take one core).
constexpr int64_t kCodesPerTask = int64_t{1} << 16;

// out[:, n] for every input row, fewer than kGemmMinRows: each packed row decoded in passes
// over up to kRowsPerPass input rows, the sums scaled and written in the same loop.
void outputs_by_passes(const uint32_t* codes, int64_t words, const at::Tensor& x, const OutputScaling& scaling,
                       at::Tensor& out) {
  const int64_t num_rows = x.size(0), stride = x.size(1), out_features = out.size(1);
  const float* x_data = x.data_ptr<float>();
  const int64_t products_per_feature = std::max<int64_t>(words * quant::kCodesPerWord * num_rows, 1);
  const int64_t grain = std::max<int64_t>(16, kCodesPerTask / products_per_feature);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "bittorch_packed_passes_cpu", [&] {
    scalar_t* out_data = out.data_ptr<scalar_t>();
    at::parallel_for(0, out_features, grain, [&](int64_t begin, int64_t end) {
      std::array<float, kRowsPerPass> row_sums{};
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t m0 = 0; m0 < num_rows; m0 += kRowsPerPass) {
          const int64_t rows = std::min(kRowsPerPass, num_rows - m0);
          dot_rows(codes + n * words, words, x_data + m0 * stride, stride, rows, row_sums.data());
          for (int64_t m = 0; m < rows; ++m) {
            out_data[(m0 + m) * out_features + n] = static_cast<scalar_t>(scaling(row_sums[m], m0 + m, n));
          }
        }
      }
    });
  });
}

// out[:, n] for every input row, where there are at least kGemmMinRows of them: each tile of
// packed rows decoded once to float32 and multiplied with all input rows by the BLAS (at::mm),
// which at that many rows outruns decoding the tile in every pass of eight; the tile's sums
// scaled and written in the same task. Tiles of up to kGemmMaxTileRows rows, smaller where
// that leaves threads without two tiles each.
constexpr int64_t kGemmMinRows = 24, kGemmMinTileRows = 16, kGemmMaxTileRows = 128;

void outputs_by_tiles(const uint32_t* codes, int64_t words, const at::Tensor& x, const OutputScaling& scaling,
                      at::Tensor& out) {
  const int64_t num_rows = x.size(0), out_features = out.size(1), stride = x.size(1);
  const int64_t per_thread = (out_features + 2 * at::get_num_threads() - 1) / (2 * at::get_num_threads());
  const int64_t tile_rows = std::clamp((per_thread + 15) / 16 * 16, kGemmMinTileRows, kGemmMaxTileRows);
  const int64_t tiles = (out_features + tile_rows - 1) / tile_rows;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "bittorch_packed_tiles_cpu", [&] {
    scalar_t* out_data = out.data_ptr<scalar_t>();
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      at::Tensor weight = at::empty({tile_rows, stride}, x.options());
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t first = tile * tile_rows, rows = std::min(tile_rows, out_features - first);
        decode_rows(codes + first * words, words, rows, weight.data_ptr<float>());
        const at::Tensor sums = at::mm(x, weight.narrow(0, 0, rows).t()).contiguous();
        const float* sum_data = sums.data_ptr<float>();
        for (int64_t m = 0; m < num_rows; ++m) {
          for (int64_t j = 0; j < rows; ++j) {
            out_data[m * out_features + first + j] =
                static_cast<scalar_t>(scaling(sum_data[m * rows + j], m, first + j));
          }
        }
      }
    });
  });
}

#if defined(__x86_64__)
// The INT8-activation layer in one pass over the input and one parallel pass over the codes:
// each row quantized as quantize_activations_reference does (same float operations, so the
// same values and scale) straight into dot_int8_avx2's layout, and each sum scaled by
// OutputScaling in the same task.
at::Tensor int8_avx2(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias, bool squared_relu) {
  const at::Tensor x = input.to(at::kFloat).contiguous();
  const int64_t rows = x.size(0), in_features = x.size(1);
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const int64_t blocks = words / 8, tail_words = words % 8;  // 8 words = 128 codes = 32 bytes
  const int64_t stride = words * quant::kCodesPerWord;
  at::Tensor values = at::zeros({rows, stride}, x.options().dtype(at::kChar));
  std::vector<float> input_scale(static_cast<size_t>(rows));
  std::vector<int32_t> block_sums(static_cast<size_t>(rows));
  const float max_code = max_activation_code(quant::ActivationFormat::Int8);
  const float* x_data = x.data_ptr<float>();
  int8_t* value_data = values.data_ptr<int8_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      input_scale[m] =
          quantize_row_int8_avx2(x_data + m * in_features, in_features, blocks, max_code, value_data + m * stride);
      block_sums[m] = block_sum_avx2(value_data + m * stride, blocks);
    }
  });
  const at::Tensor codes = packed.contiguous();
  const ScalingTensors scaling_tensors(scale, bias);
  const OutputScaling scaling = scaling_tensors.scaling(input_scale.data(), squared_relu);
  const auto* code_bytes = reinterpret_cast<const uint8_t*>(codes.data_ptr<int32_t>());
  at::Tensor output = at::empty({rows, out_features}, input.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "bittorch_packed_int8_cpu", [&] {
    scalar_t* out_data = output.data_ptr<scalar_t>();
    at::parallel_for(0, out_features, 16, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t m = 0; m < rows; ++m) {
          const int32_t sum =
              dot_int8_avx2(code_bytes + n * words * 4, blocks, tail_words, value_data + m * stride, block_sums[m]);
          out_data[m * out_features + n] = static_cast<scalar_t>(scaling(static_cast<float>(sum), m, n));
        }
      }
    });
  });
  return output;
}
#endif

at::Tensor packed_ternary_linear_cpu(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& scale,
                                     const std::optional<at::Tensor>& bias, int64_t in_features,
                                     c10::string_view activation_format, c10::string_view kernel,
                                     c10::string_view epilogue) {
  const char* op = "bittorch::packed_ternary_linear";
  const auto format = check_packed_linear_args(op, input, packed, scale, bias, in_features, activation_format, kernel);
  const bool squared_relu = parse_packed_epilogue(op, epilogue) == PackedEpilogue::SquaredReLU;
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const at::Tensor rows_in = input.reshape({-1, in_features});
  const int64_t num_rows = rows_in.size(0);
#if defined(__x86_64__)
  if (format == quant::ActivationFormat::Int8 && kHasAvx2) {
    return int8_avx2(rows_in, packed, scale, bias, squared_relu).view(linear_output_shape(input, out_features));
  }
#endif
  at::Tensor input_scale;
  at::Tensor values = rows_in;
  if (format != quant::ActivationFormat::None) {
    std::tie(values, input_scale) = quantize_activations_reference(rows_in, format);
  }
  // Rows padded with zeros to whole words, so that the kernels never test for the end: a copy
  // unless the rows already are float32 of whole words.
  const int64_t columns = words * quant::kCodesPerWord;
  at::Tensor x = values;
  if (values.scalar_type() != at::kFloat || in_features != columns || !values.is_contiguous()) {
    x = at::zeros({num_rows, columns}, input.options().dtype(at::kFloat));
    x.narrow(1, 0, in_features).copy_(values);
  }
  const at::Tensor codes = packed.contiguous();
  const auto* code_data = reinterpret_cast<const uint32_t*>(codes.data_ptr<int32_t>());
  const ScalingTensors scaling_tensors(scale, bias);
  const at::Tensor row_scale = input_scale.defined() ? input_scale.contiguous() : at::Tensor();
  const OutputScaling scaling =
      scaling_tensors.scaling(row_scale.defined() ? row_scale.data_ptr<float>() : nullptr, squared_relu);
  at::Tensor out = at::empty({num_rows, out_features}, input.options());
  if (num_rows < kGemmMinRows) {
    outputs_by_passes(code_data, words, x, scaling, out);
  } else {
    outputs_by_tiles(code_data, words, x, scaling, out);
  }
  return out.view(linear_output_shape(input, out_features));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_cpu);
}

}  // namespace bittorch::ops
