#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

using bittorch::nn::functional::ternarize;
using bittorch::quant::QuantConfig;
using bittorch::quant::ScaleMode;
using bittorch::testing::reference_scale_dtype;
using bittorch::testing::reference_ternarize;
using bittorch::testing::throws_error_mentioning;

struct TernarizeCase {
  torch::Dtype dtype;
  ScaleMode mode;
  bool per_channel;
};

class TernarizeMatchesReference : public ::testing::TestWithParam<TernarizeCase> {};

TEST_P(TernarizeMatchesReference, CodesExactScalesClose) {
  const auto [dtype, mode, per_channel] = GetParam();
  torch::manual_seed(0);
  for (const auto& shape :
       std::vector<std::vector<int64_t>>{{1, 1}, {1, 7}, {3, 1}, {5, 13}, {16, 33}, {64, 256}, {7, 1000}}) {
    for (double threshold_factor : {0.0, 0.05, 0.3, 0.7, 1.0}) {
      const auto weight = torch::randn(shape).to(dtype);
      const auto [codes, scale] =
          ternarize(weight, QuantConfig().threshold_factor(threshold_factor).per_channel(per_channel).scale_mode(mode));
      const auto ref = reference_ternarize(weight, threshold_factor, per_channel, mode == ScaleMode::AbsMean,
                                           reference_scale_dtype(dtype));
      ASSERT_EQ(codes.scalar_type(), dtype);
      ASSERT_EQ(codes.sizes(), weight.sizes());
      ASSERT_EQ(scale.scalar_type(), reference_scale_dtype(dtype));
      ASSERT_EQ(scale.sizes(), ref.scale.sizes());
      EXPECT_TRUE(torch::allclose(scale.to(torch::kDouble), ref.scale, 1e-6, 0.0))
          << "shape " << weight.sizes() << " threshold_factor " << threshold_factor;
      EXPECT_TRUE(torch::equal(codes.to(torch::kDouble), ref.codes))
          << "shape " << weight.sizes() << " threshold_factor " << threshold_factor;
      EXPECT_FALSE(codes.requires_grad());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypesModesGranularities, TernarizeMatchesReference,
                         ::testing::Values(TernarizeCase{torch::kFloat, ScaleMode::Max, true},
                                           TernarizeCase{torch::kFloat, ScaleMode::Max, false},
                                           TernarizeCase{torch::kFloat, ScaleMode::AbsMean, true},
                                           TernarizeCase{torch::kFloat, ScaleMode::AbsMean, false},
                                           TernarizeCase{torch::kDouble, ScaleMode::Max, true},
                                           TernarizeCase{torch::kDouble, ScaleMode::AbsMean, false},
                                           TernarizeCase{torch::kHalf, ScaleMode::Max, true},
                                           TernarizeCase{torch::kHalf, ScaleMode::AbsMean, true},
                                           TernarizeCase{torch::kBFloat16, ScaleMode::Max, false},
                                           TernarizeCase{torch::kBFloat16, ScaleMode::AbsMean, true}),
                         [](const auto& info) {
                           return std::string(c10::toString(info.param.dtype)) + "_" +
                                  bittorch::quant::to_string(info.param.mode) +
                                  (info.param.per_channel ? "_per_channel" : "_global");
                         });

TEST(Ternarize, ValuesAreTernary) {
  torch::manual_seed(1);
  const auto weight = torch::randn({32, 48}) * 3;
  for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    const auto codes = ternarize(weight, QuantConfig().scale_mode(mode)).codes;
    EXPECT_TRUE(((codes == -1) | (codes == 0) | (codes == 1)).all().item<bool>());
    // Both signs and zero appear for a Gaussian weight.
    EXPECT_TRUE((codes == -1).any().item<bool>());
    EXPECT_TRUE((codes == 1).any().item<bool>());
  }
}

TEST(Ternarize, SparsityGrowsMonotonicallyWithThreshold) {
  torch::manual_seed(2);
  const auto weight = torch::randn({64, 64});
  double previous = -1.0;
  for (int step = 0; step <= 20; ++step) {
    const double threshold_factor = step / 20.0;
    const auto codes = ternarize(weight, QuantConfig().threshold_factor(threshold_factor)).codes;
    const double sparsity = (codes == 0).to(torch::kDouble).mean().item<double>();
    EXPECT_GE(sparsity, previous) << "threshold_factor " << threshold_factor;
    previous = sparsity;
  }
  EXPECT_EQ(previous, 1.0);  // threshold_factor 1: nothing exceeds max|w|
}

TEST(Ternarize, ThresholdZeroKeepsEveryNonzeroWeight) {
  const auto weight = torch::tensor({{0.5, -0.001, 0.0, 2.0}});
  const auto codes = ternarize(weight, QuantConfig().threshold_factor(0.0)).codes;
  EXPECT_TRUE(torch::equal(codes, torch::tensor({{1.0, -1.0, 0.0, 1.0}})));
}

TEST(Ternarize, ThresholdOneZeroesEverything) {
  const auto weight = torch::tensor({{0.5, -1.0, 0.25}, {3.0, 3.0, -3.0}});
  const auto codes = ternarize(weight, QuantConfig().threshold_factor(1.0)).codes;
  EXPECT_TRUE(torch::equal(codes, torch::zeros_like(weight)));
}

TEST(Ternarize, HandComputedScales) {
  const auto weight = torch::tensor({{1.0, -2.0, 0.5, 0.5}, {0.0, 0.0, 0.0, -4.0}});
  // Per channel, max: scales 2 and 4; threshold 0.3 -> 0.6 and 1.2.
  auto q = ternarize(weight, QuantConfig().threshold_factor(0.3));
  EXPECT_TRUE(torch::equal(q.scale, torch::tensor({2.0, 4.0})));
  EXPECT_TRUE(torch::equal(q.codes, torch::tensor({{1.0, -1.0, 0.0, 0.0}, {0.0, 0.0, 0.0, -1.0}})));
  // Global, max: scale 4, threshold 1.2.
  q = ternarize(weight, QuantConfig().threshold_factor(0.3).per_channel(false));
  EXPECT_TRUE(torch::equal(q.scale, torch::tensor({4.0})));
  EXPECT_TRUE(torch::equal(q.codes, torch::tensor({{0.0, -1.0, 0.0, 0.0}, {0.0, 0.0, 0.0, -1.0}})));
  // Per channel, absmean: scales 1 and 1; round(w / 1) clamped.
  q = ternarize(weight, QuantConfig().scale_mode(ScaleMode::AbsMean));
  EXPECT_TRUE(torch::equal(q.scale, torch::tensor({1.0, 1.0})));
  // round(0.5) is 0 (half to even).
  EXPECT_TRUE(torch::equal(q.codes, torch::tensor({{1.0, -1.0, 0.0, 0.0}, {0.0, 0.0, 0.0, -1.0}})));
  // Global, absmean: scale 1; threshold_factor plays no part.
  q = ternarize(weight, QuantConfig().scale_mode(ScaleMode::AbsMean).per_channel(false).threshold_factor(0.99));
  EXPECT_TRUE(torch::equal(q.scale, torch::tensor({1.0})));
}

TEST(Ternarize, AllZeroRowUsesTheScaleFloor) {
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
      const auto weight = torch::zeros({2, 3}, dtype);
      const auto q = ternarize(weight, QuantConfig().scale_mode(mode));
      EXPECT_TRUE(torch::equal(q.codes, weight));
      EXPECT_TRUE(torch::allclose(q.scale, torch::full({2}, 1e-8, q.scale.options())));
      EXPECT_TRUE(torch::isfinite(q.scale).all().item<bool>());
    }
  }
}

TEST(Ternarize, RejectsBadArguments) {
  EXPECT_TRUE(throws_error_mentioning([] { ternarize(torch::randn({2, 3, 4})); }, {"2-D", "3-D", "[2, 3, 4]"}));
  EXPECT_TRUE(throws_error_mentioning([] { ternarize(torch::randn({4})); }, {"2-D", "1-D"}));
  EXPECT_TRUE(throws_error_mentioning([] { ternarize(torch::ones({2, 2}, torch::kInt)); }, {"floating point", "Int"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        ternarize(torch::randn({2, 2}), QuantConfig().threshold_factor(1.5));
      },
      {"threshold_factor in [0, 1]", "1.5"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        ternarize(torch::randn({2, 2}), QuantConfig().threshold_factor(-0.1));
      },
      {"threshold_factor", "-0.1"}));
  EXPECT_TRUE(throws_error_mentioning([] { ternarize(torch::randn({0, 3})); }, {"at least one row"}));
  EXPECT_TRUE(throws_error_mentioning([] { bittorch::quant::scale_mode_from_string("mean"); },
                                      {"\"max\" or \"absmean\"", "\"mean\""}));
}

TEST(Ternarize, MetaGivesShapesOnly) {
  const auto weight = torch::empty({6, 10}, torch::TensorOptions().device(torch::kMeta).dtype(torch::kBFloat16));
  auto q = ternarize(weight);
  EXPECT_TRUE(q.codes.is_meta());
  EXPECT_EQ(q.codes.sizes(), weight.sizes());
  EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({6}));
  EXPECT_EQ(q.scale.scalar_type(), torch::kFloat);
  q = ternarize(weight, QuantConfig().per_channel(false));
  EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({1}));
}

TEST(Ternarize, ScaleModeNamesRoundTrip) {
  for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    EXPECT_EQ(bittorch::quant::scale_mode_from_string(bittorch::quant::to_string(mode)), mode);
  }
}

}  // namespace
