// bittorch::quant::quantize_activations (per-row 8-bit activations) against the loop
// reference of reference.h, bit for bit.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "reference.h"

namespace {

using bittorch::quant::ActivationFormat;
using bittorch::testing::reference_quantize_activations;
using bittorch::testing::throws_error_mentioning;

const std::vector<std::vector<int64_t>> kShapes = {{1, 1}, {3, 7},    {5, 16},    {2, 3, 33}, {0, 4},
                                                   {9},    {64, 129}, {17, 4096}, {2, 13000}};

TEST(QuantizeActivations, EqualsTheReferenceBitForBit) {
  torch::manual_seed(30);
  for (const auto format : {ActivationFormat::Int8, ActivationFormat::Float8E4M3}) {
    for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
      for (const auto& shape : kShapes) {
        // Rows of very different magnitudes, one all-zero row and one below the 1e-5 floor.
        auto x = torch::randn(shape) * torch::logspace(-3, 3, shape.back());
        if (x.dim() == 2 && x.size(0) >= 3) {
          x[0].zero_();
          x[1].mul_(1e-9);
        }
        x = x.to(dtype);
        const auto q = bittorch::nn::functional::quantize_activations(x, format);
        const auto ref = reference_quantize_activations(x, format == ActivationFormat::Int8);
        std::ostringstream what;
        what << bittorch::quant::to_string(format) << " " << dtype << " " << torch::IntArrayRef(shape);
        ASSERT_EQ(q.values.sizes(), x.sizes()) << what.str();
        EXPECT_EQ(q.values.scalar_type(), format == ActivationFormat::Int8 ? torch::kChar : torch::kFloat8_e4m3fn);
        EXPECT_EQ(q.scale.scalar_type(), torch::kFloat);
        EXPECT_TRUE(torch::equal(q.values.to(torch::kDouble), ref.values)) << what.str();
        EXPECT_TRUE(torch::equal(q.scale.to(torch::kDouble), ref.scale)) << what.str();
      }
    }
  }
}

// A row holding NaN gets a NaN scale, one holding +-Inf an infinite one, and both all-zero
// values, so that the layer's outputs of that row are NaN; other rows are untouched.
TEST(QuantizeActivations, NonFiniteRowsGetANonFiniteScaleAndZeroValues) {
  torch::manual_seed(32);
  for (const auto format : {ActivationFormat::Int8, ActivationFormat::Float8E4M3}) {
    auto x = torch::randn({4, 37});
    x[0][5] = std::nanf("");
    x[1][0] = INFINITY;
    x[2][36] = -INFINITY;
    const auto q = bittorch::nn::functional::quantize_activations(x, format);
    const auto what = bittorch::quant::to_string(format);
    EXPECT_TRUE(std::isnan(q.scale[0][0].item<float>())) << what;
    EXPECT_TRUE(std::isinf(q.scale[1][0].item<float>())) << what;
    EXPECT_TRUE(std::isinf(q.scale[2][0].item<float>())) << what;
    EXPECT_TRUE(torch::equal(q.values.slice(0, 0, 3).to(torch::kFloat), torch::zeros({3, 37}))) << what;
    const auto ref = reference_quantize_activations(x.slice(0, 3), format == ActivationFormat::Int8);
    EXPECT_TRUE(torch::equal(q.values.slice(0, 3).to(torch::kDouble), ref.values)) << what;
    EXPECT_TRUE(torch::equal(q.scale.slice(0, 3).to(torch::kDouble), ref.scale)) << what;
  }
}

TEST(QuantizeActivations, ReconstructsTheInputClosely) {
  torch::manual_seed(31);
  const auto x = torch::randn({64, 256});
  for (const auto& [format, max_relative_error] : std::vector<std::pair<ActivationFormat, double>>{
           {ActivationFormat::Int8, 0.5 / 127}, {ActivationFormat::Float8E4M3, 1.0 / 16}}) {
    const auto q = bittorch::nn::functional::quantize_activations(x, format);
    const auto reconstructed = q.values.to(torch::kFloat) * q.scale;
    const auto absmax = x.abs().amax(-1, true);
    // Int8: half a step of absmax/127; FP8 e4m3: half an ulp (3 mantissa bits) of each value.
    const auto bound = format == ActivationFormat::Int8 ? absmax * max_relative_error * 1.0001
                                                        : x.abs() * max_relative_error + absmax * 1e-3;
    EXPECT_TRUE(((reconstructed - x).abs() <= bound).all().item<bool>()) << bittorch::quant::to_string(format);
    EXPECT_TRUE(torch::equal(q.values.to(torch::kFloat).abs().amax(-1, true),
                             torch::full_like(absmax, format == ActivationFormat::Int8 ? 127.0 : 448.0)));
  }
}

TEST(QuantizeActivations, FormatForDevice) {
  using bittorch::ops::activation_format_for;
  EXPECT_EQ(activation_format_for(0, torch::kCPU), ActivationFormat::None);
  EXPECT_EQ(activation_format_for(8, torch::kCPU), ActivationFormat::Int8);
  EXPECT_TRUE(throws_error_mentioning([] { activation_format_for(4, torch::kCPU); }, {"activation_bits", "4"}));
  EXPECT_EQ(bittorch::quant::activation_format_from_string("float8_e4m3"), ActivationFormat::Float8E4M3);
  EXPECT_TRUE(throws_error_mentioning([] { bittorch::quant::activation_format_from_string("fp8"); },
                                      {"\"int8\"", "\"float8_e4m3\"", "fp8"}));
}

TEST(QuantizeActivations, RejectsBadInputs) {
  const auto quantize = [](const torch::Tensor& x, ActivationFormat f) {
    bittorch::nn::functional::quantize_activations(x, f);
  };
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        quantize(torch::randn({2, 3}, torch::kDouble), ActivationFormat::Int8);
      },
      {"float32, float16 or bfloat16", "Double"}));
  EXPECT_TRUE(throws_error_mentioning([&] { quantize(torch::randn({2, 3}), ActivationFormat::None); }, {"\"none\""}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        quantize(torch::randn({2, 0}), ActivationFormat::Int8);
      },
      {"at least one feature", "[2, 0]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { quantize(torch::tensor(1.0F), ActivationFormat::Int8); }, {"0-D"}));
}

TEST(QuantizeActivations, MetaGivesShapes) {
  const auto x = torch::empty({2, 5, 7}, torch::TensorOptions().device(torch::kMeta));
  const auto q = bittorch::nn::functional::quantize_activations(x, ActivationFormat::Float8E4M3);
  EXPECT_EQ(q.values.sizes(), x.sizes());
  EXPECT_EQ(q.values.scalar_type(), torch::kFloat8_e4m3fn);
  EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({2, 5, 1}));
}

}  // namespace
