#pragma once

// bittorch::rotary_embedding against the rotation written from its formula (reference_rotate,
// position by position) on one device: the CPU and the CUDA tests run the same cases.

#include "ops/decode_attention_check.h"
#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace bittorch::testing {

/// Rotates every position t of x [B, H, T, D] by the angles of position start + t (a negative
/// `direction` rotates back: the backward's reference), in double.
inline torch::Tensor reference_rotate_positions(const torch::Tensor& x, int64_t start, int direction = 1) {
  std::vector<torch::Tensor> rows;
  for (int64_t t = 0; t < x.size(2); ++t)
    rows.push_back(reference_rotate(x.select(2, t), direction * (start + t), kRopeBase));
  return torch::stack(rows, 2);
}

enum class RotaryLayout {
  kHeadMajor,   // [B, H, T, D] contiguous
  kTokenMajor,  // q and k as the model makes them: [B, T, H, D] viewed as [B, H, T, D]
  kOffset,      // token-major rows of H * D + 1 elements from the second: no row on a 16-byte boundary
};

struct RotaryCase {
  int64_t batch, heads, key_heads, positions, head_size, start;
  RotaryLayout layout;
};

// Head sizes whose halves are and are not whole 16-byte runs of every dtype (the CUDA kernel's
// vector loads and its element-wise fallback).
inline std::vector<RotaryCase> rotary_cases() {
  constexpr auto head_major = RotaryLayout::kHeadMajor, token_major = RotaryLayout::kTokenMajor;
  return {{1, 1, 1, 1, 2, 0, head_major},
          {2, 3, 3, 5, 8, 4, token_major},
          {3, 4, 2, 7, 6, 0, token_major},
          {2, 2, 1, 9, 130, 11, head_major},
          {2, 4, 2, 6, 64, 3, token_major},
          {2, 3, 3, 5, 32, 0, head_major},
          {2, 2, 2, 4, 64, 1, RotaryLayout::kOffset}};
}

/// [B, heads, T, D] random values in `dtype` on `device`, in the layout of `c`.
inline torch::Tensor rotary_input(const RotaryCase& c, int64_t heads, torch::Dtype dtype, torch::Device device) {
  const auto values = [&](std::vector<int64_t> shape) {
    return torch::randn(shape, torch::kDouble).to(dtype).to(device);
  };
  switch (c.layout) {
    case RotaryLayout::kTokenMajor:
      return values({c.batch, c.positions, heads, c.head_size}).transpose(1, 2);
    case RotaryLayout::kOffset:
      return values({c.batch, c.positions, heads * c.head_size + 1})
          .narrow(2, 1, heads * c.head_size)
          .view({c.batch, c.positions, heads, c.head_size})
          .transpose(1, 2);
    case RotaryLayout::kHeadMajor:
      break;
  }
  return values({c.batch, heads, c.positions, c.head_size});
}

inline double rotary_tolerance(torch::Dtype dtype) {
  return dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 4e-3 : 3e-2;
}

/// The op's outputs and input gradients on `device` against the formula's, every case and dtype;
/// the outputs keep the inputs' layouts.
inline void expect_rotary_embedding_matches_the_formula(torch::Device device) {
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& c : rotary_cases()) {
      torch::manual_seed(7);
      const auto q = rotary_input(c, c.heads, dtype, device).requires_grad_();
      const auto k = rotary_input(c, c.key_heads, dtype, device).requires_grad_();
      const auto table_dtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
      const auto [cos, sin] = formula_rotary_tables(c.start + c.positions, c.head_size, table_dtype);
      const auto [rq, rk] = bittorch::ops::rotary_embedding(q, k, cos.narrow(0, c.start, c.positions).to(device),
                                                            sin.narrow(0, c.start, c.positions).to(device));
      const auto gq = torch::randn(rq.sizes(), torch::kDouble).to(dtype).to(device);
      const auto gk = torch::randn(rk.sizes(), torch::kDouble).to(dtype).to(device);
      torch::autograd::backward({rq, rk}, {gq, gk});
      const double tol = rotary_tolerance(dtype);
      const std::string what = std::string(c10::toString(dtype)) + " head " + std::to_string(c.head_size) +
                               " positions " + std::to_string(c.positions) + " from " + std::to_string(c.start);
      const auto near = [&](const torch::Tensor& got, const torch::Tensor& want) {
        return torch::allclose(got.cpu().to(torch::kDouble), want, tol, tol);
      };
      EXPECT_EQ(rq.scalar_type(), dtype) << what;
      if (c.layout != RotaryLayout::kOffset) {  // an offset view's rows come back without the gaps
        EXPECT_EQ(rq.strides(), q.strides()) << what;
        EXPECT_EQ(rk.strides(), k.strides()) << what;
      }
      EXPECT_TRUE(near(rq, reference_rotate_positions(q.detach().cpu(), c.start))) << what;
      EXPECT_TRUE(near(rk, reference_rotate_positions(k.detach().cpu(), c.start))) << what;
      EXPECT_TRUE(near(q.grad(), reference_rotate_positions(gq.cpu(), c.start, -1))) << what;
      EXPECT_TRUE(near(k.grad(), reference_rotate_positions(gk.cpu(), c.start, -1))) << what;
    }
  }
}

/// rotary_embedding_split on `device` against the formula, every case and dtype: the query and
/// key heads of a joined projection rotated, the value heads as they are, each laid out [B, T,
/// heads, D]; the joined gradient holds the query's and key's gradients rotated back and the
/// value's, side by side. An offset case's joined tensor starts one element into its storage.
inline void expect_rotary_embedding_split_matches_the_formula(torch::Device device) {
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& c : rotary_cases()) {
      torch::manual_seed(9);
      const int64_t width = (c.heads + 2 * c.key_heads) * c.head_size;
      const bool offset = c.layout == RotaryLayout::kOffset;
      const auto storage = torch::randn({c.batch, c.positions, width + (offset ? 1 : 0)}, torch::kDouble)
                               .to(dtype)
                               .to(device)
                               .requires_grad_();
      const auto joined = storage.narrow(2, offset ? 1 : 0, width);
      const auto table_dtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
      const auto [cos, sin] = formula_rotary_tables(c.start + c.positions, c.head_size, table_dtype);
      const auto [q, k, v] =
          bittorch::ops::rotary_embedding_split(joined, c.heads, cos.narrow(0, c.start, c.positions).to(device),
                                                sin.narrow(0, c.start, c.positions).to(device));
      // Heads first..first + count of a [B, T, width] tensor, as [B, heads, T, D] in double.
      const auto heads = [&](const torch::Tensor& t, int64_t first, int64_t count) {
        return t.detach()
            .cpu()
            .to(torch::kDouble)
            .narrow(2, first * c.head_size, count * c.head_size)
            .reshape({c.batch, c.positions, count, c.head_size})
            .transpose(1, 2);
      };
      const auto gq = torch::randn(q.sizes(), torch::kDouble).to(dtype).to(device);
      const auto gk = torch::randn(k.sizes(), torch::kDouble).to(dtype).to(device);
      const auto gv = torch::randn(v.sizes(), torch::kDouble).to(dtype).to(device);
      torch::autograd::backward({q, k, v}, {gq, gk, gv});
      const auto grad = storage.grad().narrow(2, offset ? 1 : 0, width);
      const double tol = rotary_tolerance(dtype);
      const std::string what = std::string(c10::toString(dtype)) + " heads " + std::to_string(c.heads) + "+" +
                               std::to_string(c.key_heads) + " head " + std::to_string(c.head_size) + " positions " +
                               std::to_string(c.positions) + (offset ? " offset" : "");
      const auto near = [&](const torch::Tensor& got, const torch::Tensor& want) {
        return torch::allclose(got.cpu().to(torch::kDouble), want, tol, tol);
      };
      EXPECT_EQ(q.scalar_type(), dtype) << what;
      EXPECT_EQ(q.sizes(), torch::IntArrayRef({c.batch, c.heads, c.positions, c.head_size})) << what;
      EXPECT_EQ(v.sizes(), torch::IntArrayRef({c.batch, c.key_heads, c.positions, c.head_size})) << what;
      for (const auto& out : {q, k, v}) EXPECT_TRUE(out.transpose(1, 2).is_contiguous()) << what;
      EXPECT_TRUE(near(q, reference_rotate_positions(heads(joined, 0, c.heads), c.start))) << what;
      EXPECT_TRUE(near(k, reference_rotate_positions(heads(joined, c.heads, c.key_heads), c.start))) << what;
      EXPECT_TRUE(torch::equal(v.cpu().to(torch::kDouble), heads(joined, c.heads + c.key_heads, c.key_heads))) << what;
      EXPECT_TRUE(near(heads(grad, 0, c.heads), reference_rotate_positions(gq.cpu().to(torch::kDouble), c.start, -1)))
          << what;
      EXPECT_TRUE(
          near(heads(grad, c.heads, c.key_heads), reference_rotate_positions(gk.cpu().to(torch::kDouble), c.start, -1)))
          << what;
      EXPECT_TRUE(torch::equal(heads(grad, c.heads + c.key_heads, c.key_heads), gv.cpu().to(torch::kDouble))) << what;
    }
  }
}

}  // namespace bittorch::testing
