// PackedTernaryLinear and bittorch::pack on the CPU: the packed layer reproduces the
// TernaryLinear it came from.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

using bittorch::nn::PackedTernaryLinear;
using bittorch::nn::TernaryLinear;
using bittorch::nn::TernaryLinearOptions;
using bittorch::testing::throws_error_mentioning;

// Relative to the output's magnitude: the packed layer sums x * code and scales once, the
// TernaryLinear sums x * (code * scale rounded to the dtype).
double tolerance(torch::Dtype dtype) {
  return dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 4e-3 : 3e-2;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, torch::Dtype dtype,
                  const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  ASSERT_EQ(actual.scalar_type(), dtype) << what;
  if (expected.numel() == 0) return;
  const auto e = expected.to(torch::kDouble);
  const double magnitude = std::max(1.0, e.abs().max().item<double>());
  const double error = (actual.to(torch::kDouble) - e).abs().max().item<double>();
  EXPECT_LE(error, tolerance(dtype) * magnitude) << what << ": max error " << error;
}

struct Case {
  std::vector<int64_t> input;
  int64_t out_features;
};

const std::vector<Case> kCases = {{{1, 1}, 1},     {{3, 5}, 7},     {{2, 16}, 3},    {{4, 17}, 9},    {{9, 37}, 5},
                                  {{1, 64}, 65},   {{2, 3, 40}, 6}, {{0, 8}, 4},     {{11, 100}, 33}, {{1, 784}, 256},
                                  {{70, 129}, 17}, {{8}, 3},        {{24, 300}, 130}};

TEST(PackedTernaryLinear, EqualsTheTernaryLinearItCameFrom) {
  torch::manual_seed(41);
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const int64_t bits : {0, 8}) {
      for (const bool per_channel : {true, false}) {
        for (const auto& c : kCases) {
          const int64_t in = c.input.back();
          TernaryLinear layer(
              TernaryLinearOptions(in, c.out_features)
                  .bias(c.out_features % 2 == 1)
                  .quant(bittorch::quant::QuantConfig().per_channel(per_channel).activation_bits(bits)));
          layer->to(dtype);  // both layers quantize the same (rounded) weight
          PackedTernaryLinear packed(*layer);
          const auto x = torch::randn(c.input);
          const auto expected = layer(x.to(dtype));
          const auto what = c10::str("input ", c10::IntArrayRef(c.input), " out ", c.out_features, " ", dtype, " bits ",
                                     bits, " per_channel ", per_channel);
          expect_close(packed(x.to(dtype)), expected, dtype, what);
        }
      }
    }
  }
}

// 16-bit inputs take the float32 bias converted once and kept: a change of the bias in place,
// a new bias tensor and a clone's own bias are each seen by the next forward, which equals the
// layer without bias plus the bias rounded to the input's dtype.
TEST(PackedTernaryLinear, SixteenBitForwardsSeeEveryChangeOfTheBias) {
  torch::manual_seed(47);
  const int64_t in = 40, out = 6;
  TernaryLinear layer(TernaryLinearOptions(in, out));
  PackedTernaryLinear packed(*layer);
  PackedTernaryLinear without_bias(*TernaryLinear(TernaryLinearOptions(in, out).bias(false)));
  without_bias->packed.copy_(packed->packed);
  without_bias->scale.copy_(packed->scale);
  const auto x = torch::randn({3, in});
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    const auto expect_bias = [&](PackedTernaryLinear model, const torch::Tensor& bias, const std::string& what) {
      const auto expected = (without_bias(x.to(dtype)).to(torch::kFloat) + bias.to(dtype).to(torch::kFloat)).to(dtype);
      expect_close(model(x.to(dtype)), expected, dtype, c10::str(dtype, " ", what));
    };
    expect_bias(packed, packed->bias, "first forward");
    expect_bias(packed, packed->bias, "second forward");
    {
      torch::NoGradGuard no_grad;
      packed->bias.add_(100.0);  // in place: the same tensor, a new version
    }
    expect_bias(packed, packed->bias, "after add_");
    packed->bias = torch::full({out}, -50.0);  // another tensor (as a move to another device makes)
    expect_bias(packed, packed->bias, "after a new bias");
    const auto copy = std::dynamic_pointer_cast<bittorch::nn::PackedTernaryLinearImpl>(packed->clone());
    {
      torch::NoGradGuard no_grad;
      copy->bias.fill_(7.0);
    }
    expect_bias(PackedTernaryLinear(copy), copy->bias, "clone");
    expect_bias(packed, packed->bias, "original after the clone's change");
  }
}

// forward_squared_relu: max(y, 0)^2 of the TernaryLinear's output y, every dtype and
// activation format; NaN stays NaN; an unknown epilogue is an error naming it.
TEST(PackedTernaryLinear, SquaredReluEpilogueSquaresThePositiveOutputs) {
  torch::manual_seed(42);
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const int64_t bits : {0, 8}) {
      for (const auto& c : kCases) {
        const int64_t in = c.input.back();
        TernaryLinear layer(TernaryLinearOptions(in, c.out_features)
                                .bias(c.out_features % 2 == 1)
                                .quant(bittorch::quant::QuantConfig().activation_bits(bits)));
        layer->to(dtype);
        PackedTernaryLinear packed(*layer);
        const auto x = torch::randn(c.input).to(dtype);
        const auto y = layer(x).to(torch::kDouble);
        const auto expected = torch::where(y < 0, torch::zeros_like(y), y * y);
        const auto what =
            c10::str("input ", c10::IntArrayRef(c.input), " out ", c.out_features, " ", dtype, " bits ", bits);
        // Squaring doubles the relative error of the value squared.
        const auto got = packed->forward_squared_relu(x);
        ASSERT_EQ(got.scalar_type(), dtype) << what;
        if (expected.numel() == 0) continue;
        const double magnitude = std::max(1.0, expected.abs().max().item<double>());
        const double error = (got.to(torch::kDouble) - expected).abs().max().item<double>();
        EXPECT_LE(error, 2 * tolerance(dtype) * magnitude) << what << ": max error " << error;
      }
    }
  }
  PackedTernaryLinear packed(*TernaryLinear(12, 4));
  auto x = torch::randn({2, 12});
  x[1][3] = NAN;
  const auto y = packed->forward_squared_relu(x);
  EXPECT_FALSE(torch::isnan(y[0]).any().item<bool>());
  EXPECT_TRUE(torch::isnan(y[1]).all().item<bool>());
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::packed_ternary_linear(x, packed->packed, packed->scale, packed->bias, 12, "none", "auto",
                                             "gelu");
      },
      {"unknown epilogue", "gelu", "squared_relu"}));
}

// INT8 activations at their largest code (127) against rows of codes all +1, alternating and
// all -1, over 8,336 inputs (65 whole blocks of 128 and a tail): the AVX2 kernel's narrow
// partial sums must not overflow, and the layer equals the TernaryLinear it came from bit for
// bit (the sums are exact integers either way, scaled the same way).
TEST(PackedTernaryLinear, Int8SumsStayExactOnLongRows) {
  const int64_t in = 8336;
  TernaryLinear layer(TernaryLinearOptions(in, 3).quant(bittorch::quant::QuantConfig().activation_bits(8)));
  {
    torch::NoGradGuard no_grad;
    layer->weight[0].fill_(0.5);
    layer->weight[1].copy_(torch::arange(in).remainder(2).mul(-1.0).add(0.5));  // +0.5, -0.5, ...
    layer->weight[2].fill_(-0.5);
  }
  PackedTernaryLinear packed(*layer);
  for (const double value : {1.0, -1.0}) {
    const auto x = torch::full({2, in}, value);
    const auto expected = layer(x);
    EXPECT_TRUE(torch::equal(packed(x), expected)) << "inputs " << value << ": " << packed(x) << " vs " << expected;
  }
}

TEST(PackedTernaryLinear, HoldsNoFullPrecisionWeight) {
  TernaryLinear layer(784, 256);
  PackedTernaryLinear packed(*layer);
  EXPECT_TRUE(packed->parameters().empty());
  std::vector<std::string> names;
  for (const auto& item : packed->named_buffers()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"packed", "scale", "bias"}));
  EXPECT_EQ(packed->packed.scalar_type(), torch::kInt);
  EXPECT_EQ(packed->weight_bytes(), 256 * (784 / 16) * 4 + 256 * 4);
  EXPECT_FALSE(packed(torch::randn({2, 784}).requires_grad_()).requires_grad());
}

TEST(PackedTernaryLinear, MnistModelIsAtLeast15_5xSmallerPackedAnd19xInTrits) {
  torch::nn::Sequential model(TernaryLinear(784, 256), torch::nn::ReLU(), TernaryLinear(256, 128), torch::nn::ReLU(),
                              TernaryLinear(128, 10));
  int64_t fp32_bytes = 0, packed_bytes = 0, trit_bytes = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find("weight") != std::string::npos) fp32_bytes += p.value().numel() * 4;
  }
  auto packed = bittorch::pack(model);
  for (const auto& child : packed->children()) {
    if (const auto* layer = child->as<bittorch::nn::PackedTernaryLinearImpl>()) {
      packed_bytes += layer->weight_bytes();
      trit_bytes +=
          bittorch::quant::pack_trits(bittorch::quant::unpack_ternary(layer->packed, layer->options.in_features()))
              .numel() +
          layer->scale.numel() * 4;
    }
  }
  EXPECT_EQ(fp32_bytes, 939008);
  EXPECT_EQ(packed_bytes, 60264);  // docs/packed-format.md
  EXPECT_EQ(trit_bytes, 48527);
  EXPECT_GE(static_cast<double>(fp32_bytes) / packed_bytes, 15.5);
  EXPECT_GE(static_cast<double>(fp32_bytes) / trit_bytes, 19.0);
}

TEST(PackedTernaryLinear, SaveLoadRoundTripIsBitExact) {
  PackedTernaryLinear packed(*TernaryLinear(30, 7));
  std::stringstream stream;
  torch::save(packed, stream);
  PackedTernaryLinear restored(bittorch::nn::PackedTernaryLinearOptions(30, 7));
  torch::load(restored, stream);
  const auto x = torch::randn({5, 30});
  EXPECT_TRUE(torch::equal(restored(x), packed(x)));
  EXPECT_TRUE(torch::equal(restored->packed, packed->packed));
}

TEST(Pack, ConvertsEveryTernaryLinearOfASequentialIntoACopy) {
  torch::manual_seed(42);
  torch::nn::Sequential model(TernaryLinear(20, 16), torch::nn::ReLU(), TernaryLinear(16, 8), torch::nn::Linear(8, 3));
  auto packed = bittorch::pack(model);
  ASSERT_EQ(packed->size(), 4U);
  EXPECT_NE(packed[0]->as<bittorch::nn::PackedTernaryLinearImpl>(), nullptr);
  EXPECT_NE(packed[2]->as<bittorch::nn::PackedTernaryLinearImpl>(), nullptr);
  EXPECT_NE(packed[3]->as<torch::nn::LinearImpl>(), nullptr);
  EXPECT_NE(packed[3]->as<torch::nn::LinearImpl>(), model[3]->as<torch::nn::LinearImpl>());  // cloned
  EXPECT_NE(model[0]->as<bittorch::nn::TernaryLinearImpl>(), nullptr);  // the original is untouched
  const auto x = torch::randn({6, 20});
  EXPECT_TRUE(torch::allclose(packed->forward(x), model->forward(x), 1e-5, 1e-5));
}

TEST(PackedTernaryLinear, RejectsBadInputs) {
  PackedTernaryLinear packed(*TernaryLinear(12, 4));
  EXPECT_TRUE(throws_error_mentioning([&] { packed(torch::randn({2, 13})); }, {"in_features = 12", "[2, 13]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        packed(torch::randn({2, 12}, torch::kDouble));
      },
      {"float32, float16 or bfloat16", "Double"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] { PackedTernaryLinear(*TernaryLinear(TernaryLinearOptions(3, 2).quantize(false))); }, {"quantize(false)"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        bittorch::ops::packed_ternary_linear(torch::randn({2, 12}), torch::zeros({4, 2}, torch::kInt), torch::ones({4}),
                                             std::nullopt, 12, "none");
      },
      {"[out_features, 1]", "[4, 2]"}));
}

// Loading a saved layer into one of another size is refused; the layer keeps its tensors.
TEST(PackedTernaryLinear, LoadRefusesAnotherShape) {
  PackedTernaryLinear packed(*TernaryLinear(30, 7));
  std::stringstream stream;
  torch::save(packed, stream);
  PackedTernaryLinear other(bittorch::nn::PackedTernaryLinearOptions(40, 7));
  EXPECT_TRUE(throws_error_mentioning([&] { torch::load(other, stream); },
                                      {"PackedTernaryLinear", "'packed'", "[7, 2]", "[7, 3]"}));
  EXPECT_EQ(other->packed.sizes(), torch::IntArrayRef({7, 3}));
}

TEST(Pack, RefusesNonFiniteWeightsNamingTheLayer) {
  torch::nn::Sequential model(TernaryLinear(6, 4), torch::nn::ReLU(), TernaryLinear(4, 2));
  {
    torch::NoGradGuard no_grad;
    model[2]->as<bittorch::nn::TernaryLinearImpl>()->weight[1][3] = -INFINITY;
  }
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::pack(model); }, {"bittorch::nn::pack", "layer '2'", "weight",
                                                                       "1 non-finite value", "-inf", "[1, 3]"}));
}

// NaN and +-Inf inputs reach the outputs as in the unpacked layer: NaN wherever it is NaN,
// non-finite wherever it is (the unpacked layer multiplies zero codes too: 0 * Inf is NaN).
// With 8-bit activations a row holding one has no finite scale: all its outputs are NaN.
// CTest runs this once more through the portable loop (BITTORCH_NO_AVX2=1).
// Five rows (passes over the packed rows) and thirty (tiles decoded for the BLAS on the CPU).
TEST(PackedTernaryLinear, NonFiniteInputsPropagateAsInTheUnpackedLayer) {
  torch::manual_seed(43);
  for (const int64_t rows : {5, 30}) {
    for (const int64_t bits : {0, 8}) {
      for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
        TernaryLinear layer(TernaryLinearOptions(40, 9).quant(bittorch::quant::QuantConfig().activation_bits(bits)));
        layer->to(dtype);
        PackedTernaryLinear packed(*layer);
        auto x = torch::randn({rows, 40}).to(dtype);
        x[0][3] = std::nanf("");
        x[1][5] = INFINITY;
        x[2][7] = -INFINITY;
        x[3][0] = INFINITY;
        x[3][1] = -INFINITY;  // row 4 stays finite
        const auto expected = layer(x).to(torch::kDouble);
        const auto actual = packed(x).to(torch::kDouble);
        const auto what = c10::str(rows, " rows, bits ", bits, " ", dtype);
        EXPECT_TRUE(torch::equal(torch::isfinite(actual), torch::isfinite(expected))) << what << "\n"
                                                                                      << actual << expected;
        EXPECT_TRUE(torch::equal(torch::isnan(actual), torch::isnan(expected))) << what << "\n" << actual << expected;
        EXPECT_TRUE(torch::isnan(actual[0]).all().item<bool>()) << what;
        if (bits == 8) EXPECT_TRUE(torch::isnan(actual.slice(0, 0, 4)).all().item<bool>()) << what;
        expect_close(packed(x.slice(0, 4)), layer(x.slice(0, 4)), dtype, what + " finite rows");
      }
    }
  }
}

}  // namespace
