// The 2-bit format with plain ATen ops (the same code runs on CPU and CUDA tensors); the
// file format with byte loops on the CPU, which need no intermediate tensors.

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <array>

namespace bittorch::quant {
namespace {

void check_codes(const char* op, const at::Tensor& codes) {
  TORCH_CHECK(codes.defined() && codes.dim() == 2, op, ": expected 2-D codes [out_features, in_features], but got ",
              codes.defined() ? codes.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(codes.scalar_type() != at::kBool && !at::isComplexType(codes.scalar_type()), op,
              ": expected integer or floating-point codes, but got ", codes.scalar_type());
  TORCH_CHECK(codes.numel() == 0 || ((codes == 0) | (codes == 1) | (codes == -1)).all().item<bool>(), op,
              ": expected codes in {-1, 0, 1}");
}

// Powers along the last dimension: base^0, base^1, ...
at::Tensor powers(int64_t base, int64_t count, const at::TensorOptions& options) {
  return at::pow(at::full({count}, base, options.dtype(at::kLong)), at::arange(count, options.dtype(at::kLong)));
}

void check_packed(const char* op, const at::Tensor& packed, int64_t in_features) {
  TORCH_CHECK(packed.defined() && packed.dim() == 2 && packed.scalar_type() == at::kInt, op,
              ": expected int32 packed codes [out_features, words]");
  TORCH_CHECK(in_features >= 1 && packed.size(1) == packed_words(in_features), op, ": in_features ", in_features,
              " needs ", packed_words(in_features), " words per row, but the matrix has ", packed.size(1));
}

// The file format: five codes per byte, byte = sum over i < 5 of (code_i + 1) * 3^i.
constexpr int kTritsPerByte = 5;
constexpr uint32_t kMaxTritByte = 242;  // 3^5 - 1

constexpr int64_t trit_bytes(int64_t numel) {
  return (numel + kTritsPerByte - 1) / kTritsPerByte;
}

// The bytes of `numel` codes, code_at(index) called once per index in order; the last byte
// is padded with zero codes.
template <typename CodeAt>
std::vector<uint8_t> encode_trits(int64_t numel, CodeAt&& code_at) {
  std::vector<uint8_t> bytes(static_cast<size_t>(trit_bytes(numel)));
  for (int64_t b = 0, index = 0; b < static_cast<int64_t>(bytes.size()); ++b) {
    uint32_t value = 0;
    for (uint32_t i = 0, place = 1; i < kTritsPerByte; ++i, ++index, place *= 3) {
      value += static_cast<uint32_t>((index < numel ? code_at(index) : 0) + 1) * place;
    }
    bytes[b] = static_cast<uint8_t>(value);
  }
  return bytes;
}

// Calls visit(code) for each of the `numel` codes of `bytes` in order, after checking each
// byte and the padding; errors count bytes from `first_byte`.
template <typename Visit>
void decode_trits(const char* op, const uint8_t* bytes, int64_t numel, Visit&& visit, int64_t first_byte = 0) {
  for (int64_t b = 0, index = 0; b < trit_bytes(numel); ++b) {
    uint32_t value = bytes[b];
    TORCH_CHECK(value <= kMaxTritByte, op, ": corrupted codes (a byte above 242 at byte ", first_byte + b, ")");
    for (int i = 0; i < kTritsPerByte; ++i, ++index, value /= 3) {
      const int code = static_cast<int>(value % 3) - 1;
      if (index < numel) {
        visit(code);
      } else {
        TORCH_CHECK(code == 0, op, ": corrupted codes (nonzero padding)");
      }
    }
  }
}

}  // namespace

at::Tensor pack_ternary(const at::Tensor& codes) {
  check_codes("bittorch::quant::pack_ternary", codes);
  const int64_t rows = codes.size(0), cols = codes.size(1), words = packed_words(cols);
  const auto long_options = codes.options().dtype(at::kLong);
  at::Tensor padded = at::zeros({rows, words * kCodesPerWord}, long_options);
  padded.narrow(1, 0, cols).copy_(codes.to(at::kLong));
  // Two's-complement low bits of each code, shifted into place; the fields are disjoint, so
  // their sum is the word (in int64, then wrapped to int32's range).
  const at::Tensor fields = padded.bitwise_and(3).view({rows, words, kCodesPerWord});
  at::Tensor word = (fields * powers(4, kCodesPerWord, long_options)).sum(-1);
  word = at::where(word >= (int64_t{1} << 31), word - (int64_t{1} << 32), word);
  return word.to(at::kInt);
}

at::Tensor unpack_ternary(const at::Tensor& packed, int64_t in_features) {
  const char* op = "bittorch::quant::unpack_ternary";
  check_packed(op, packed, in_features);
  const int64_t rows = packed.size(0);
  const auto long_options = packed.options().dtype(at::kLong);
  const at::Tensor word = packed.to(at::kLong).bitwise_and(0xFFFFFFFFLL).unsqueeze(-1);
  const at::Tensor fields = word.div(powers(4, kCodesPerWord, long_options), "floor").remainder(4).view({rows, -1});
  TORCH_CHECK(!(fields == 2).any().item<bool>(), op, ": corrupted packed codes (a field 10)");
  const int64_t padding = fields.size(1) - in_features;
  TORCH_CHECK(padding == 0 || !fields.narrow(1, in_features, padding).ne(0).any().item<bool>(), op,
              ": corrupted packed codes (nonzero padding)");
  // 00 -> 0, 01 -> 1, 11 -> -1
  return (fields.narrow(1, 0, in_features) - fields.narrow(1, 0, in_features).div(2, "floor") * 4).to(at::kChar);
}

at::Tensor pack_trits(const at::Tensor& codes) {
  check_codes("bittorch::quant::pack_trits", codes);
  const at::Tensor values = codes.to(at::kChar).cpu().contiguous();
  const int8_t* data = values.data_ptr<int8_t>();
  const auto bytes = encode_trits(values.numel(), [&](int64_t index) { return data[index]; });
  return at::tensor(bytes, at::TensorOptions().dtype(at::kByte)).to(codes.device());
}

at::Tensor unpack_trits(const at::Tensor& bytes, int64_t numel) {
  const char* op = "bittorch::quant::unpack_trits";
  TORCH_CHECK(bytes.defined() && bytes.dim() == 1 && bytes.scalar_type() == at::kByte, op,
              ": expected a 1-D uint8 tensor");
  TORCH_CHECK(numel >= 0 && bytes.size(0) == trit_bytes(numel), op, ": ", numel, " codes need ", trit_bytes(numel),
              " bytes, but got ", bytes.size(0));
  const at::Tensor host = bytes.cpu().contiguous();
  at::Tensor codes = at::empty({numel}, host.options().dtype(at::kChar));
  int8_t* out = codes.data_ptr<int8_t>();
  decode_trits(op, host.data_ptr<uint8_t>(), numel, [&](int code) { *out++ = static_cast<int8_t>(code); });
  return codes.to(bytes.device());
}

namespace {

// The five 2-bit fields of each byte's codes, code i in bits 2i and 2i + 1 (-1 -> 11, 0 -> 00,
// +1 -> 01), and kBadTritByte for a byte above 242.
constexpr uint32_t kBadTritByte = 1U << 10;
const std::array<uint32_t, 256>& fields_of_byte() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> fields{};
    for (uint32_t byte = 0; byte < 256; ++byte) {
      fields[byte] = kBadTritByte;
      if (byte > kMaxTritByte) continue;
      fields[byte] = 0;
      for (uint32_t i = 0, value = byte; i < kTritsPerByte; ++i, value /= 3) {
        fields[byte] |= (value % 3 == 0 ? 3U : value % 3 - 1) << (2 * i);
      }
    }
    return fields;
  }();
  return table;
}

// Codes per group of the one-stream decoder: 16 bytes hold 80 codes, 5 words.
constexpr int64_t kGroupBytes = 16, kGroupWords = 5, kGroupCodes = kGroupBytes * kTritsPerByte;

}  // namespace

void packed_from_trits(const uint8_t* bytes, int64_t size, int64_t in_features, at::Tensor& packed) {
  const char* op = "bittorch::quant::packed_from_trits";
  check_packed(op, packed, in_features);
  TORCH_CHECK(packed.device().is_cpu() && packed.is_contiguous(), op, ": expected a contiguous CPU matrix");
  const int64_t out_features = packed.size(0), numel = out_features * in_features;
  TORCH_CHECK(size == trit_bytes(numel), op, ": ", out_features, "x", in_features, " codes need ", trit_bytes(numel),
              " bytes, but got ", size);
  auto* words = reinterpret_cast<uint32_t*>(packed.data_ptr<int32_t>());
  int64_t done = 0;  // codes decoded by the one-stream decoder
  if (in_features % kCodesPerWord == 0) {
    // Rows of whole words: the fields of all rows are one stream, and a byte's ten bits append
    // to it. Groups of 16 bytes fill 5 words exactly, so the threads take groups apart.
    const auto& table = fields_of_byte();
    const int64_t groups = numel / kGroupCodes;
    at::parallel_for(0, groups, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t group = begin; group < end; ++group) {
        const uint8_t* in = bytes + group * kGroupBytes;
        uint32_t* out = words + group * kGroupWords;
        uint64_t stream = 0;
        int bits = 0;
        for (int64_t b = 0; b < kGroupBytes; ++b) {
          const uint32_t fields = table[in[b]];
          TORCH_CHECK(fields != kBadTritByte, op, ": corrupted codes (a byte above 242 at byte ",
                      group * kGroupBytes + b, ")");
          stream |= static_cast<uint64_t>(fields) << bits;
          bits += 2 * kTritsPerByte;
          if (bits >= 32) {
            *out++ = static_cast<uint32_t>(stream);
            stream >>= 32;
            bits -= 32;
          }
        }
      }
    });
    done = groups * kGroupCodes;
  }
  // The rest code by code, each word assembled in a register and stored whole (its padding
  // fields zero), so no pass clears the matrix first.
  uint32_t* word = words + done / kCodesPerWord;
  uint32_t fields = 0;
  int64_t column = done % in_features;
  decode_trits(
      op, bytes + done / kTritsPerByte, numel - done,
      [&](int code) {
        fields |= (static_cast<uint32_t>(code) & 3U) << (2 * (column % kCodesPerWord));
        if (++column % kCodesPerWord == 0 || column == in_features) {
          *word++ = fields;
          fields = 0;
          if (column == in_features) column = 0;
        }
      },
      done / kTritsPerByte);
}

std::vector<uint8_t> trits_from_packed(const at::Tensor& packed, int64_t in_features) {
  const char* op = "bittorch::quant::trits_from_packed";
  check_packed(op, packed, in_features);
  const at::Tensor host = packed.cpu().contiguous();
  const int64_t words = host.size(1);
  const auto* word = reinterpret_cast<const uint32_t*>(host.data_ptr<int32_t>());
  for (int64_t row = 0; row < host.size(0); ++row) {
    const uint32_t last = word[row * words + words - 1];
    const int used = static_cast<int>(in_features - (words - 1) * kCodesPerWord);
    TORCH_CHECK(used == kCodesPerWord || (last >> (2 * used)) == 0, op, ": corrupted packed codes (nonzero padding)");
  }
  int64_t column = 0;
  return encode_trits(host.size(0) * in_features, [&](int64_t /*index*/) {
    const uint32_t field = (word[column / kCodesPerWord] >> (2 * (column % kCodesPerWord))) & 3U;
    TORCH_CHECK(field != 2U, op, ": corrupted packed codes (a field 10)");
    if (++column == in_features) {
      column = 0;
      word += words;
    }
    return field == 3U ? -1 : static_cast<int>(field);
  });
}

}  // namespace bittorch::quant
