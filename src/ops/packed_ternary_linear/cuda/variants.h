#pragma once

// The CUDA kernel variants of packed_ternary_linear, one family per file; the dispatch
// (packed_ternary_linear_cuda.cpp) picks one by the heuristics or by name.
//
//   gemv     float32 activations: codes turned into -1/0/+1 in registers, code * x summed in
//            float32 (tensor cores would round the input). Any number of rows.
//   mma      16-bit or 8-bit activations, up to 8 rows: codes decoded straight into mma
//            fragments, one block per tile of output features.
//   split_k  16-bit or 8-bit activations, any rows: the mma loop over ranges of K, partial
//            sums added in float32, then scaled.
//   stream   16-bit or 8-bit activations, any rows (64 a block): codes and rows streamed through
//            shared memory by a cp.async pipeline, each decoded fragment serving every row;
//            K split across blocks where they would not fill the GPU.
//   tiled    16-bit or 8-bit activations, many rows: a tensor-core GEMM whose blocks decode the
//            codes of a tile once into shared memory (32, 64 or 128 rows x 128 features a block;
//            e4m3 activations on FP8 tensor cores only).
//   wgmma    16-bit or e4m3 activations on Hopper (built where CUTLASS's headers were found): a
//            CUTLASS 3 mixed-input GEMM, the codes as its int2b_t operand, widened in registers
//            for wgmma; TMA, warp-specialized, stream-K; 64- or 128-row tiles.
//   expand   anything: codes expanded to the layer's operand (codes * scale in the input
//            dtype, or 8-bit codes), then cuBLAS's product.

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <optional>

namespace bittorch::ops::cuda {

/// out[rows, out_features] = (x @ codes^T) * scale (* row_scale) + bias: what the gemv, mma,
/// split_k and tiled variants compute.
struct PackedProduct {
  /// [rows, words * 16], contiguous and 16-byte aligned, zero-padded to whole words: the
  /// input rows (float32, float16, bfloat16) or their 8-bit values (int8, float8_e4m3fn).
  at::Tensor x;
  /// int32 [out_features, words], contiguous.
  at::Tensor packed;
  /// float32 [out_features] or [1], contiguous.
  at::Tensor scale;
  /// float32 [rows, 1] with 8-bit activations quantized before the kernel, else undefined.
  at::Tensor row_scale;
  /// [out_features] in out's dtype, contiguous, or undefined.
  at::Tensor bias;
  /// [rows, out_features] in the input's dtype, written.
  at::Tensor out;
  /// Each output y written as max(y, 0)^2 (apply_packed_epilogue).
  bool squared_relu = false;
  /// Where defined (the mma variant, 16-bit x): the rows multiplied are add_rms_norm's output
  /// for x and norm_residual (norm_weight in x's dtype, norm_eps), which each block computes
  /// into shared memory first; one block writes the sum to norm_sum. x, norm_residual and
  /// norm_sum are then [rows, in_features], contiguous, unpadded, and the output is x's dtype.
  at::Tensor norm_residual, norm_weight, norm_sum;
  double norm_eps = 0;
  /// Not None (the mma variant, 16-bit x, [rows, in_features] contiguous and unpadded; the
  /// output in x's dtype, no row_scale): each block quantizes the rows it multiplies (x's, or
  /// the normed ones) to this 8-bit format in shared memory, as quantize_activations does.
  quant::ActivationFormat prologue_format = quant::ActivationFormat::None;
};

/// Needs a float32 x.
void gemv_product(const PackedProduct& p);
/// Needs a float16, bfloat16, int8 or float8_e4m3fn x of at most kMaxMmaVariantRows rows.
void mma_product(const PackedProduct& p);
constexpr int64_t kMaxMmaVariantRows = 8;
/// The most bytes of rows that mma_product's prologue stages in shared memory
/// (prologue_bytes): with the kernel's static shared memory (at most 5 KB), within the 48 KB a
/// launch may take without opting in to more.
constexpr int64_t kMaxPrologueBytes = 40 * 1024;
/// The shared memory of the mma prologue: rows x words * 16 elements (the rows padded to whole
/// words) of element_size bytes where they are normed, and of one byte where `format` is 8-bit.
constexpr int64_t prologue_bytes(int64_t rows, int64_t words, int64_t element_size, bool normed,
                                 quant::ActivationFormat format) {
  return rows * words * 16 * ((normed ? element_size : 0) + (format == quant::ActivationFormat::None ? 0 : 1));
}
/// Needs a float16, bfloat16, int8 or float8_e4m3fn x.
void split_k_product(const PackedProduct& p);

/// Needs a float16, bfloat16, int8 or float8_e4m3fn x.
void stream_product(const PackedProduct& p);

/// Needs a float16, bfloat16, int8 or (on FP8 tensor cores) float8_e4m3fn x.
void tiled_product(const PackedProduct& p);

#ifdef BITTORCH_WITH_CUTLASS
/// Needs float16 or bfloat16 x with the same output dtype, or float8_e4m3fn x (with row_scale)
/// and a float16 or bfloat16 output, on a compute capability 9.0 device, words a multiple of 4
/// (TMA's 16-byte rows of codes), out_features a multiple of 8 (16-byte output columns) and
/// 16-byte aligned codes (checked).
void wgmma_product(const PackedProduct& p);
/// Whether wgmma_product takes `packed` with rows of dtype `rows` (the input's, or
/// float8_e4m3fn) and an output of dtype `output`.
bool wgmma_takes(const at::Tensor& packed, at::ScalarType rows, at::ScalarType output);
#endif

/// The expand variant on the input rows [rows, in_features] themselves: (x @ codes^T) * scale
/// + bias in the input's dtype, 8-bit activations quantized here.
at::Tensor expand_product(const at::Tensor& rows, const at::Tensor& packed, const at::Tensor& scale,
                          const std::optional<at::Tensor>& bias, int64_t in_features, quant::ActivationFormat format);

}  // namespace bittorch::ops::cuda
