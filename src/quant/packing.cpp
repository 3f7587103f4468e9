// Packing with plain ATen ops: the same code runs on CPU and CUDA tensors.

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace bittorch::quant {
namespace {

void check_codes(const char* op, const at::Tensor& codes) {
  TORCH_CHECK(codes.defined() && codes.dim() == 2, op,
              ": expected 2-D codes [out_features, in_features], but got ",
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
  TORCH_CHECK(packed.defined() && packed.dim() == 2 && packed.scalar_type() == at::kInt, op,
              ": expected int32 packed codes [out_features, words]");
  TORCH_CHECK(in_features >= 1 && packed.size(1) == packed_words(in_features), op, ": in_features ",
              in_features, " needs ", packed_words(in_features), " words per row, but the matrix has ",
              packed.size(1));
  const int64_t rows = packed.size(0);
  const auto long_options = packed.options().dtype(at::kLong);
  const at::Tensor word = packed.to(at::kLong).bitwise_and(0xFFFFFFFFLL).unsqueeze(-1);
  const at::Tensor fields =
      word.div(powers(4, kCodesPerWord, long_options), "floor").remainder(4).view({rows, -1});
  TORCH_CHECK(!(fields == 2).any().item<bool>(), op, ": corrupted packed codes (a field 10)");
  const int64_t padding = fields.size(1) - in_features;
  TORCH_CHECK(padding == 0 || !fields.narrow(1, in_features, padding).ne(0).any().item<bool>(), op,
              ": corrupted packed codes (nonzero padding)");
  // 00 -> 0, 01 -> 1, 11 -> -1
  return (fields.narrow(1, 0, in_features) - fields.narrow(1, 0, in_features).div(2, "floor") * 4)
      .to(at::kChar);
}

at::Tensor pack_trits(const at::Tensor& codes) {
  check_codes("bittorch::quant::pack_trits", codes);
  const int64_t numel = codes.numel();
  const int64_t bytes = (numel + 4) / 5;
  const auto long_options = codes.options().dtype(at::kLong);
  at::Tensor digits = at::ones({bytes * 5}, long_options);  // code 0 is digit 1
  digits.narrow(0, 0, numel).copy_(codes.reshape({-1}).to(at::kLong) + 1);
  return (digits.view({bytes, 5}) * powers(3, 5, long_options)).sum(-1).to(at::kByte);
}

at::Tensor unpack_trits(const at::Tensor& bytes, int64_t numel) {
  const char* op = "bittorch::quant::unpack_trits";
  TORCH_CHECK(bytes.defined() && bytes.dim() == 1 && bytes.scalar_type() == at::kByte, op,
              ": expected a 1-D uint8 tensor");
  TORCH_CHECK(numel >= 0 && bytes.size(0) == (numel + 4) / 5, op, ": ", numel, " codes need ",
              (numel + 4) / 5, " bytes, but got ", bytes.size(0));
  const auto long_options = bytes.options().dtype(at::kLong);
  const at::Tensor values = bytes.to(at::kLong);
  TORCH_CHECK(!(values > 242).any().item<bool>(), op, ": corrupted codes (a byte above 242)");
  const at::Tensor digits = values.unsqueeze(-1).div(powers(3, 5, long_options), "floor").remainder(3).view({-1});
  const int64_t padding = digits.size(0) - numel;
  TORCH_CHECK(padding == 0 || !digits.narrow(0, numel, padding).ne(1).any().item<bool>(), op,
              ": corrupted codes (nonzero padding)");
  return (digits.narrow(0, 0, numel) - 1).to(at::kChar);
}

}  // namespace bittorch::quant
