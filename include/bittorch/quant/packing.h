#pragma once

// Packed ternary weights (docs/packed-format.md): 2 bits per weight for the kernels, 1.6 bits
// per weight (five trits per byte) for files.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace bittorch::quant {

/// Weights per int32 word of the 2-bit format.
constexpr int64_t kCodesPerWord = 16;

/// int32 words of one packed row of `in_features` weights (the row padded with zero codes to a
/// multiple of 16).
constexpr int64_t packed_words(int64_t in_features) {
  return (in_features + kCodesPerWord - 1) / kCodesPerWord;
}

/// Packs ternary codes [out, in] (any integer or floating dtype, values in {-1, 0, 1}) into
/// int32 [out, packed_words(in)]: code k of a row sits in bits 2(k % 16) and 2(k % 16) + 1 of
/// word k / 16, as its two's-complement low bits (0 -> 00, +1 -> 01, -1 -> 11). CPU or CUDA.
BITTORCH_API at::Tensor pack_ternary(const at::Tensor& codes);

/// The codes (int8 [out, in_features]) of a packed matrix. A field 10, or a nonzero padding
/// field, is a c10::Error (a corrupted matrix).
BITTORCH_API at::Tensor unpack_ternary(const at::Tensor& packed, int64_t in_features);

/// The file format: the codes of `codes` in row-major order, five per byte as
/// sum((code_i + 1) * 3^i), the last byte padded with zero codes. uint8 [ceil(numel / 5)].
BITTORCH_API at::Tensor pack_trits(const at::Tensor& codes);

/// int8 codes of `numel` weights from pack_trits bytes (a 1-D uint8 tensor). A byte above 242,
/// a nonzero padding trit or a wrong length is a c10::Error.
BITTORCH_API at::Tensor unpack_trits(const at::Tensor& bytes, int64_t numel);

/// Decodes the file format's `size` bytes at `bytes` straight into the 2-bit matrix `packed`
/// (int32 [out_features, packed_words(in_features)], contiguous, on the CPU), overwriting it:
/// no intermediate, so that loading a model takes about the memory of the model. Errors as
/// unpack_trits.
BITTORCH_API void packed_from_trits(const uint8_t* bytes, int64_t size, int64_t in_features, at::Tensor& packed);

/// The file format's bytes of a 2-bit matrix (CPU or CUDA), without an intermediate of the
/// codes. Errors as unpack_ternary.
BITTORCH_API std::vector<uint8_t> trits_from_packed(const at::Tensor& packed, int64_t in_features);

}  // namespace bittorch::quant
