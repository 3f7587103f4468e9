// bittorch::add_rms_norm_packed_linear on the CPU (and Meta) against the float64 reference
// from the formulas: leading dimensions, odd widths, per-channel and global scales, bias and
// the squared ReLU epilogue; no gradients; argument checks naming the op.

#include "ops/add_rms_norm_packed_linear_check.h"
#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

struct Layer {
  torch::Tensor codes, packed, scale, bias;
};

Layer random_layer(int64_t in, int64_t out, bool per_channel, bool with_bias, torch::Dtype dtype) {
  Layer layer;
  layer.codes = torch::randint(-1, 2, {out, in}, torch::kChar);
  layer.packed = bittorch::quant::pack_ternary(layer.codes);
  layer.scale = per_channel ? torch::rand({out}) + 0.1 : torch::rand({1}) + 0.1;
  if (with_bias) layer.bias = torch::randn({out}).to(dtype);
  return layer;
}

std::optional<torch::Tensor> optional_bias(const Layer& layer) {
  return layer.bias.defined() ? std::optional<torch::Tensor>(layer.bias) : std::nullopt;
}

TEST(AddRmsNormPackedLinear, MatchesTheReference) {
  torch::manual_seed(60);
  struct Case {
    std::vector<int64_t> shape;
    int64_t out;
    torch::Dtype dtype;
    bool per_channel, bias, squared_relu;
  };
  const std::vector<Case> cases = {
      {{1, 16}, 1, torch::kFloat, true, false, false},      {{3, 40}, 15, torch::kFloat, false, true, true},
      {{2, 3, 64}, 33, torch::kFloat, true, true, false},   {{8, 100}, 31, torch::kBFloat16, true, false, true},
      {{1, 768}, 64, torch::kBFloat16, true, false, false}, {{9, 48}, 16, torch::kHalf, false, true, false},
      {{0, 32}, 7, torch::kFloat, true, false, false},
  };
  for (const auto& c : cases) {
    const int64_t in = c.shape.back();
    const auto layer = random_layer(in, c.out, c.per_channel, c.bias, c.dtype);
    const auto x = torch::randn(c.shape).to(c.dtype), r = torch::randn(c.shape).to(c.dtype);
    const auto w = (torch::rand({in}) + 0.5).to(c.dtype);
    const auto [output, sum] =
        bittorch::ops::add_rms_norm_packed_linear(x, r, w, 1e-6, layer.packed, layer.scale, optional_bias(layer), in,
                                                  "none", c.squared_relu ? "squared_relu" : "none");
    const auto expected = bittorch::testing::reference_add_rms_norm_packed_linear(
        x, r, w, 1e-6, layer.codes, layer.scale, layer.bias, c.squared_relu);
    const auto what = c10::str(c.dtype, " ", c10::IntArrayRef(c.shape), " out ", c.out);
    EXPECT_EQ(output.scalar_type(), c.dtype) << what;
    EXPECT_EQ(sum.scalar_type(), c.dtype) << what;
    bittorch::testing::expect_near_reference(output, expected.output, c.dtype == torch::kFloat ? 1e-4 : 2e-2, what);
    // The sum is the inputs' sum rounded once to their dtype: exact.
    EXPECT_TRUE(torch::equal(sum.to(torch::kDouble), expected.sum)) << what;
  }
}

TEST(AddRmsNormPackedLinear, MetaShapesAndNoGradients) {
  const auto layer = random_layer(32, 12, true, true, torch::kFloat);
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto [output, sum] = bittorch::ops::add_rms_norm_packed_linear(
      torch::empty({2, 5, 32}, meta), torch::empty({2, 5, 32}, meta), torch::empty({32}, meta), 1e-6,
      layer.packed.to(torch::kMeta), layer.scale.to(torch::kMeta), layer.bias.to(torch::kMeta), 32);
  EXPECT_EQ(output.sizes(), torch::IntArrayRef({2, 5, 12}));
  EXPECT_EQ(sum.sizes(), torch::IntArrayRef({2, 5, 32}));

  const auto x = torch::randn({2, 32}, torch::requires_grad());
  const auto [y, s] = bittorch::ops::add_rms_norm_packed_linear(x, torch::randn({2, 32}), torch::ones({32}), 1e-6,
                                                                layer.packed, layer.scale, std::nullopt, 32);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_FALSE(s.requires_grad());
}

TEST(AddRmsNormPackedLinear, BadArgumentsAreErrorsNamingTheOp) {
  const auto layer = random_layer(32, 12, true, false, torch::kFloat);
  const auto x = torch::randn({2, 32});
  const auto call = [&](const torch::Tensor& input, const torch::Tensor& residual, const torch::Tensor& weight,
                        const std::string& epilogue) {
    return [=] {
      bittorch::ops::add_rms_norm_packed_linear(input, residual, weight, 1e-6, layer.packed, layer.scale, std::nullopt,
                                                32, "none", epilogue);
    };
  };
  const std::string op = "add_rms_norm_packed_linear";
  EXPECT_TRUE(throws_error_mentioning(call(x, torch::randn({2, 31}), torch::ones({32}), "none"), {op, "residual"}));
  EXPECT_TRUE(throws_error_mentioning(call(x, x.to(torch::kBFloat16), torch::ones({32}), "none"), {op, "residual"}));
  EXPECT_TRUE(throws_error_mentioning(call(x, x, torch::ones({31}), "none"), {op}));
  EXPECT_TRUE(throws_error_mentioning(call(torch::randn({2, 31}), torch::randn({2, 31}), torch::ones({31}), "none"),
                                      {op, "in_features"}));
  EXPECT_TRUE(throws_error_mentioning(call(x, x, torch::ones({32}), "gelu"), {op, "epilogue"}));
}

}  // namespace
