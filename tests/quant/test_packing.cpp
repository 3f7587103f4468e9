// The packed formats (docs/packed-format.md): bit layout, round trips and corrupted input.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

using bittorch::quant::pack_ternary;
using bittorch::quant::pack_trits;
using bittorch::quant::unpack_ternary;
using bittorch::quant::unpack_trits;
using bittorch::testing::throws_error_mentioning;

torch::Tensor random_codes(int64_t rows, int64_t cols) {
  return torch::randint(-1, 2, {rows, cols}, torch::kChar);
}

TEST(Packing, BitLayoutIsTheDocumentedOne) {
  // Codes 1, -1, 0, 1 in fields 0-3 (two's-complement low bits: 01, 11, 00, 01).
  const auto codes = torch::tensor({{1, -1, 0, 1}}, torch::kChar);
  const auto packed = pack_ternary(codes);
  ASSERT_EQ(packed.sizes(), torch::IntArrayRef({1, 1}));
  EXPECT_EQ(packed.item<int32_t>(), 0b01'00'11'01);
  // Field 15 (bits 30-31) of a -1: the sign bit of the int32 word.
  auto last = torch::zeros({1, 16}, torch::kChar);
  last[0][15] = -1;
  EXPECT_EQ(static_cast<uint32_t>(pack_ternary(last).item<int32_t>()), 0xC0000000U);
  // Trits: codes -1, 0, 1, 1, -1 are digits 0, 1, 2, 2, 0.
  EXPECT_EQ(pack_trits(torch::tensor({{-1, 0, 1, 1, -1}}, torch::kChar)).item<uint8_t>(), 0 + 3 + 18 + 54 + 0);
}

TEST(Packing, RoundTripsEveryWidthAndEdgeMatrix) {
  torch::manual_seed(40);
  std::vector<torch::Tensor> matrices;
  for (int64_t cols = 1; cols <= 37; ++cols) matrices.push_back(random_codes(3, cols));
  // Rows of whole words, decoded as one stream in groups of 80 codes (threads take groups
  // apart): whole groups only, and groups with a rest.
  for (const auto& shape : std::vector<std::vector<int64_t>>{{64, 160}, {37, 48}, {300, 272}}) {
    matrices.push_back(random_codes(shape[0], shape[1]));
  }
  for (const auto& shape : std::vector<std::vector<int64_t>>{{5, 16}, {7, 1}, {1, 4096}, {9, 33}}) {
    matrices.push_back(torch::zeros(shape, torch::kChar));
    matrices.push_back(torch::ones(shape, torch::kChar));
    matrices.push_back(-torch::ones(shape, torch::kChar));
  }
  for (const auto& codes : matrices) {
    const auto what = "shape " + c10::str(codes.sizes());
    const auto packed = pack_ternary(codes);
    EXPECT_EQ(packed.size(1), (codes.size(1) + 15) / 16) << what;
    EXPECT_TRUE(torch::equal(unpack_ternary(packed, codes.size(1)), codes)) << what;
    const auto bytes = pack_trits(codes);
    EXPECT_EQ(bytes.size(0), (codes.numel() + 4) / 5) << what;
    EXPECT_TRUE(torch::equal(unpack_trits(bytes, codes.numel()).view(codes.sizes()), codes)) << what;
    // The file loops go straight from one format to the other, to the same bytes and words.
    const auto file_bytes = bittorch::quant::trits_from_packed(packed, codes.size(1));
    EXPECT_TRUE(torch::equal(torch::tensor(file_bytes, torch::kByte), bytes)) << what;
    auto decoded = torch::full(packed.sizes(), -1, torch::kInt);  // every word overwritten
    bittorch::quant::packed_from_trits(bytes.data_ptr<uint8_t>(), bytes.size(0), codes.size(1), decoded);
    EXPECT_TRUE(torch::equal(decoded, packed)) << what;
  }
  // Float codes (as ternarize returns them) pack the same as int8 ones.
  const auto codes = random_codes(4, 21);
  EXPECT_TRUE(torch::equal(pack_ternary(codes.to(torch::kFloat)), pack_ternary(codes)));
}

TEST(Packing, CorruptedInputIsAnError) {
  EXPECT_TRUE(throws_error_mentioning([] { pack_ternary(torch::tensor({{2.0F}})); }, {"{-1, 0, 1}"}));
  EXPECT_TRUE(throws_error_mentioning([] { pack_ternary(torch::zeros({4})); }, {"2-D"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_ternary(torch::tensor({{0b10}}, torch::kInt), 4); }, {"field 10"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_ternary(torch::tensor({{1 << 8}}, torch::kInt), 4); }, {"padding"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_ternary(torch::zeros({2, 2}, torch::kInt), 40); }, {"3 words", "2"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_ternary(torch::zeros({2, 1}, torch::kLong), 4); }, {"int32"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_trits(torch::tensor({243}, torch::kByte), 5); }, {"above 242"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_trits(torch::tensor({0}, torch::kByte), 3); }, {"padding"}));
  EXPECT_TRUE(throws_error_mentioning([] { unpack_trits(torch::zeros({3}, torch::kByte), 5); }, {"1 bytes", "3"}));
  // A bad byte is named by its index, in the groups of the one-stream decoder (32 x 160 codes:
  // 64 groups of 16 bytes) and after them (33 x 48: 19 groups and 13 bytes).
  for (const auto& c : std::vector<std::array<int64_t, 3>>{{32, 160, 37}, {32, 160, 1000}, {33, 48, 310}}) {
    const int64_t rows = c[0], cols = c[1], bad_byte = c[2];
    auto bytes = pack_trits(random_codes(rows, cols));
    bytes[bad_byte] = 250;
    auto packed = torch::zeros({rows, cols / 16}, torch::kInt);
    EXPECT_TRUE(throws_error_mentioning(
        [&] { bittorch::quant::packed_from_trits(bytes.data_ptr<uint8_t>(), bytes.size(0), cols, packed); },
        {"above 242", "byte " + std::to_string(bad_byte) + ")"}))
        << bad_byte;
  }
}

}  // namespace
