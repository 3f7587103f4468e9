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
  /// Nonzero: a position per sequence, sequence b's (position + b * position_stride) % context.
  int64_t position_stride = 0;
  /// q, k and v slices of one [batch, 3, heads, head_size] tensor (a fused projection's output):
  /// each sequence's rows contiguous, the sequences 3 * heads * head_size apart.
  bool sliced_inputs = false;

  std::vector<int64_t> positions() const {
    std::vector<int64_t> each;
    for (int64_t b = 0; b < batch; ++b) each.push_back((position + b * position_stride) % context);
    return each;
  }
};

/// Runs the op on `device` for one case in `dtype` and compares the output and both caches
/// with the reference: each sequence's row at its position written, every other row untouched
/// (exactly).
inline void expect_decode_attention_matches_reference(torch::Device device, torch::Dtype dtype,
                                                      const DecodeAttentionCase& c) {
  const auto what = ::testing::Message() << dtype << " batch " << c.batch << " heads " << c.heads << " head_size "
                                         << c.head_size << " context " << c.context << " position " << c.position
                                         << " stride " << c.position_stride << (c.sliced_inputs ? " sliced" : "");
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  const auto qkv = torch::randn({c.batch, 3, c.heads, c.head_size}).to(options);
  const auto q = c.sliced_inputs ? qkv.select(1, 0) : qkv.select(1, 0).contiguous();
  const auto k = c.sliced_inputs ? qkv.select(1, 1) : qkv.select(1, 1).contiguous();
  const auto v = c.sliced_inputs ? qkv.select(1, 2) : qkv.select(1, 2).contiguous();
  const auto keys_before = torch::randn({c.batch, c.heads, c.context, c.head_size}).to(options);
  const auto values_before = torch::randn({c.batch, c.heads, c.context, c.head_size}).to(options);
  auto keys = keys_before.clone(), values = values_before.clone();
  const auto [cos, sin] =
      formula_rotary_tables(c.context, c.head_size, dtype == torch::kDouble ? torch::kDouble : torch::kFloat);
  const auto positions = c.positions();
  const auto long_options = torch::TensorOptions().dtype(torch::kLong).device(device);
  const auto position = c.position_stride == 0 ? torch::full({1}, c.position, long_options)
                                               : torch::tensor(positions, torch::kLong).to(device);
  const auto out = ops::decode_attention(q, k, v, keys, values, position, cos.to(device), sin.to(device));
  ASSERT_EQ(out.sizes(), q.sizes()) << what;
  ASSERT_EQ(out.scalar_type(), dtype) << what;

  const double tolerance = decode_attention_tolerance(dtype);
  const auto close = [&](const torch::Tensor& got, const torch::Tensor& want) {
    const double error = (got.cpu().to(torch::kDouble) - want).abs().max().item<double>();
    const double magnitude = std::max(1.0, want.abs().max().item<double>());
    return error <= tolerance * magnitude;
  };
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t p = positions[b];
    const auto row = [&](const torch::Tensor& t) { return t.narrow(0, b, 1).cpu(); };
    const auto ref =
        reference_decode_attention(row(q), row(k), row(v), row(keys_before), row(values_before), p, kRopeBase, dtype);
    EXPECT_TRUE(close(row(out), ref.output)) << what << ": output of sequence " << b;
    EXPECT_TRUE(close(row(keys).select(2, p), ref.key_row)) << what << ": key cache row of sequence " << b;
    EXPECT_TRUE(torch::equal(row(values).select(2, p), row(v))) << what << ": value cache row of sequence " << b;
    const auto others = torch::arange(c.context, torch::kLong).ne(p).nonzero().squeeze(1);
    EXPECT_TRUE(torch::equal(row(keys).index_select(2, others), row(keys_before).index_select(2, others)))
        << what << ": sequence " << b;
    EXPECT_TRUE(torch::equal(row(values).index_select(2, others), row(values_before).index_select(2, others)))
        << what << ": sequence " << b;
  }
}

/// Shapes of every code path: one position; odd head counts; head sizes that take 2-, 4- and
/// 16-byte loads on CUDA; more positions than a block has threads; the first and last row;
/// sequences each at its own position; inputs sliced from one tensor.
inline std::vector<DecodeAttentionCase> decode_attention_cases(bool long_contexts) {
  std::vector<DecodeAttentionCase> cases = {
      {1, 1, 2, 1, 0},          {2, 3, 6, 5, 4},        {1, 4, 64, 16, 0},
      {1, 4, 64, 16, 9},        {3, 2, 128, 33, 32},    {2, 5, 12, 40, 17},
      {4, 3, 8, 9, 0, 5},       {5, 2, 64, 37, 36, 11}, {3, 4, 16, 20, 7, 3, true},
      {2, 2, 64, 9, 8, 0, true}};
  if (long_contexts) {
    cases.push_back({1, 12, 64, 512, 300});
    cases.push_back({2, 3, 128, 1024, 1023});
    cases.push_back({1, 2, 256, 700, 511});
    cases.push_back({6, 4, 64, 600, 3, 257});
  }
  return cases;
}

}  // namespace bittorch::testing
