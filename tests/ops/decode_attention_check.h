#pragma once

// bittorch::decode_attention against reference_decode_attention on one device: the CPU and
// the CUDA tests run the same cases.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace bittorch::testing {

constexpr double kRopeBase = 10000.0;

/// cos and signed sin [context, head_size] from the formula (not nn::functional::rotary_tables,
/// which the op's callers use), in `dtype`.
inline std::pair<torch::Tensor, torch::Tensor> formula_rotary_tables(int64_t context, int64_t head_size,
                                                                     torch::Dtype dtype) {
  auto cos = torch::empty({context, head_size}, torch::kDouble), sin = torch::empty_like(cos);
  for (int64_t p = 0; p < context; ++p) {
    for (int64_t i = 0; i < head_size / 2; ++i) {
      const double angle =
          static_cast<double>(p) * std::pow(kRopeBase, -2.0 * static_cast<double>(i) / static_cast<double>(head_size));
      cos[p][i] = cos[p][i + head_size / 2] = std::cos(angle);
      sin[p][i] = -std::sin(angle);
      sin[p][i + head_size / 2] = std::sin(angle);
    }
  }
  return {cos.to(dtype), sin.to(dtype)};
}

inline double decode_attention_tolerance(torch::Dtype dtype) {
  return dtype == torch::kDouble ? 1e-10 : dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 4e-3 : 3e-2;
}

struct DecodeAttentionCase {
  int64_t batch, heads, head_size, context, position;
};

/// Runs the op on `device` for one case in `dtype` and compares the output and both caches
/// with the reference: row `position` written, every other row untouched (exactly).
inline void expect_decode_attention_matches_reference(torch::Device device, torch::Dtype dtype,
                                                      const DecodeAttentionCase& c) {
  const auto what = ::testing::Message() << dtype << " batch " << c.batch << " heads " << c.heads << " head_size "
                                         << c.head_size << " context " << c.context << " position " << c.position;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  const auto q = torch::randn({c.batch, c.heads, c.head_size}).to(options);
  const auto k = torch::randn({c.batch, c.heads, c.head_size}).to(options);
  const auto v = torch::randn({c.batch, c.heads, c.head_size}).to(options);
  const auto keys_before = torch::randn({c.batch, c.heads, c.context, c.head_size}).to(options);
  const auto values_before = torch::randn({c.batch, c.heads, c.context, c.head_size}).to(options);
  auto keys = keys_before.clone(), values = values_before.clone();
  const auto [cos, sin] =
      formula_rotary_tables(c.context, c.head_size, dtype == torch::kDouble ? torch::kDouble : torch::kFloat);
  const auto position = torch::full({1}, c.position, torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto out = ops::decode_attention(q, k, v, keys, values, position, cos.to(device), sin.to(device));
  ASSERT_EQ(out.sizes(), q.sizes()) << what;
  ASSERT_EQ(out.scalar_type(), dtype) << what;

  const auto ref = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), keys_before.cpu(), values_before.cpu(),
                                              c.position, kRopeBase, dtype);
  const double tolerance = decode_attention_tolerance(dtype);
  const auto close = [&](const torch::Tensor& got, const torch::Tensor& want) {
    const double error = (got.cpu().to(torch::kDouble) - want).abs().max().item<double>();
    const double magnitude = std::max(1.0, want.abs().max().item<double>());
    return error <= tolerance * magnitude;
  };
  EXPECT_TRUE(close(out, ref.output)) << what << ": output";
  EXPECT_TRUE(close(keys.select(2, c.position), ref.key_row)) << what << ": key cache row";
  EXPECT_TRUE(torch::equal(values.select(2, c.position), v)) << what << ": value cache row";
  const auto others = torch::arange(c.context, torch::TensorOptions().dtype(torch::kLong).device(device))
                          .ne(c.position)
                          .nonzero()
                          .squeeze(1);
  EXPECT_TRUE(torch::equal(keys.index_select(2, others), keys_before.index_select(2, others))) << what;
  EXPECT_TRUE(torch::equal(values.index_select(2, others), values_before.index_select(2, others))) << what;
}

/// Shapes of every code path: one position; odd head counts; head sizes that take 2-, 4- and
/// 16-byte loads on CUDA; more positions than a block has threads; the first and last row.
inline std::vector<DecodeAttentionCase> decode_attention_cases(bool long_contexts) {
  std::vector<DecodeAttentionCase> cases = {{1, 1, 2, 1, 0},   {2, 3, 6, 5, 4},     {1, 4, 64, 16, 0},
                                            {1, 4, 64, 16, 9}, {3, 2, 128, 33, 32}, {2, 5, 12, 40, 17}};
  if (long_contexts) {
    cases.push_back({1, 12, 64, 512, 300});
    cases.push_back({2, 3, 128, 1024, 1023});
    cases.push_back({1, 2, 256, 700, 511});
  }
  return cases;
}

}  // namespace bittorch::testing
