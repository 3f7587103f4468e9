// The bittorch::ternary_linear op through its functional front end: forward and
// straight-through gradients against the double-precision reference of reference.h.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"

#include <optional>
#include <string>
#include <tuple>

namespace {

namespace F = bittorch::nn::functional;
using bittorch::quant::ScaleMode;
using bittorch::testing::reference_scale_dtype;
using bittorch::testing::reference_ternarize;
using bittorch::testing::reference_ternary_linear;
using bittorch::testing::throws_error_mentioning;

// Tolerances per dtype, relative to the magnitude of the result (|x| |w| sqrt(K)).
double tolerance(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kDouble:
      return 1e-12;
    case torch::kFloat:
      return 1e-5;
    case torch::kHalf:
      return 2e-3;
    default:
      return 1.6e-2;  // bfloat16: 8 bits of mantissa
  }
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, torch::Dtype dtype,
                  const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  if (expected.numel() == 0) return;
  const auto a = actual.to(torch::kDouble);
  const double magnitude = std::max(1.0, expected.abs().max().item<double>());
  const double max_error = (a - expected).abs().max().item<double>();
  EXPECT_LE(max_error, tolerance(dtype) * magnitude) << what;
}

struct LinearCase {
  std::vector<int64_t> input_shape;  // last dimension is in_features
  int64_t out_features;
};

std::string describe(const LinearCase& c, torch::Dtype dtype, ScaleMode mode, bool per_channel, bool with_bias) {
  std::ostringstream s;
  s << "input " << torch::IntArrayRef(c.input_shape) << " out " << c.out_features << " dtype " << dtype << " mode "
    << bittorch::quant::to_string(mode) << " per_channel " << per_channel << " bias " << with_bias;
  return s.str();
}

const std::vector<LinearCase> kShapes = {
    {{1, 1}, 1},       {{1, 1}, 7},   {{3, 1}, 3},    {{1, 3}, 1},    {{2, 7}, 5},     {{4, 5}, 9},
    {{3, 13}, 11},     {{8, 33}, 17}, {{16, 63}, 31}, {{5, 100}, 3},  {{1, 129}, 65},  {{2, 3, 6}, 4},
    {{2, 2, 2, 9}, 5}, {{7}, 3},      {{0, 8}, 4},    {{2, 0, 5}, 3}, {{64, 128}, 96}, {{33, 257}, 130},
};

class TernaryLinearMatchesReference : public ::testing::TestWithParam<std::tuple<torch::Dtype, ScaleMode, bool>> {};

TEST_P(TernaryLinearMatchesReference, ForwardAndGradients) {
  const auto [dtype, mode, per_channel] = GetParam();
  torch::manual_seed(3);
  for (const auto& c : kShapes) {
    for (bool with_bias : {true, false}) {
      const int64_t in_features = c.input_shape.back();
      const auto input = torch::randn(c.input_shape).to(dtype).requires_grad_();
      const auto weight = (torch::randn({c.out_features, in_features}) * 0.2).to(dtype).requires_grad_();
      const auto bias = with_bias ? torch::randn({c.out_features}).to(dtype).requires_grad_() : torch::Tensor();
      const auto options = F::TernaryLinearFuncOptions().quant(
          bittorch::quant::QuantConfig().scale_mode(mode).per_channel(per_channel).threshold_factor(0.1));
      const auto output = F::ternary_linear(input, weight, bias, options);
      const auto grad_output = torch::randn(output.sizes()).to(dtype);
      output.backward(grad_output);

      const auto q = reference_ternarize(weight.detach(), 0.1, per_channel, mode == ScaleMode::AbsMean,
                                         reference_scale_dtype(dtype));
      // Inputs are rounded to `dtype` already; the reference computes in double from them.
      const auto ref = reference_ternary_linear(input.detach(), weight.detach(), bias.defined() ? bias.detach() : bias,
                                                grad_output, q);
      const auto what = describe(c, dtype, mode, per_channel, with_bias);
      ASSERT_EQ(output.scalar_type(), dtype) << what;
      expect_close(output, ref.output, dtype, what + " output");
      expect_close(input.grad(), ref.grad_input, dtype, what + " grad_input");
      expect_close(weight.grad(), ref.grad_weight, dtype, what + " grad_weight");
      if (with_bias) expect_close(bias.grad(), ref.grad_bias, dtype, what + " grad_bias");
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<torch::Dtype, ScaleMode, bool>>& info) {
  return std::string(c10::toString(std::get<0>(info.param))) + "_" +
         bittorch::quant::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_per_channel" : "_global");
}

INSTANTIATE_TEST_SUITE_P(DtypesModesGranularities, TernaryLinearMatchesReference,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kHalf,
                                                              torch::kBFloat16),
                                            ::testing::Values(ScaleMode::Max, ScaleMode::AbsMean), ::testing::Bool()),
                         case_name);

// 8-bit activations (W1.58A8) on the CPU: the op against the reference, for both formats
// (the CPU runs FP8 e4m3 too, when asked for it by name).
class EightBitActivationsMatchReference
    : public ::testing::TestWithParam<std::tuple<torch::Dtype, bittorch::quant::ActivationFormat, bool>> {};

TEST_P(EightBitActivationsMatchReference, ForwardAndGradients) {
  const auto [dtype, format, per_channel] = GetParam();
  torch::manual_seed(6);
  const auto format_name = bittorch::quant::to_string(format);
  for (const auto& c : kShapes) {
    for (bool with_bias : {true, false}) {
      const int64_t in_features = c.input_shape.back();
      const auto input = torch::randn(c.input_shape).to(dtype).requires_grad_();
      const auto weight = (torch::randn({c.out_features, in_features}) * 0.2).to(dtype).requires_grad_();
      const auto bias = with_bias ? torch::randn({c.out_features}).to(dtype).requires_grad_() : torch::Tensor();
      const auto output = bittorch::ops::ternary_linear(input, weight, with_bias ? std::optional(bias) : std::nullopt,
                                                        0.1, per_channel, "max", format_name);
      const auto grad_output = torch::randn(output.sizes()).to(dtype);
      output.backward(grad_output);

      const auto q = reference_ternarize(weight.detach(), 0.1, per_channel, false, reference_scale_dtype(dtype));
      const auto activations = bittorch::testing::reference_quantize_activations(
          input.detach(), format == bittorch::quant::ActivationFormat::Int8);
      const auto ref = reference_ternary_linear(input.detach(), weight.detach(), bias.defined() ? bias.detach() : bias,
                                                grad_output, q, &activations);
      const auto what = describe(c, dtype, ScaleMode::Max, per_channel, with_bias) + " " + format_name;
      ASSERT_EQ(output.scalar_type(), dtype) << what;
      expect_close(output, ref.output, dtype, what + " output");
      expect_close(input.grad(), ref.grad_input, dtype, what + " grad_input");
      expect_close(weight.grad(), ref.grad_weight, dtype, what + " grad_weight");
      if (with_bias) expect_close(bias.grad(), ref.grad_bias, dtype, what + " grad_bias");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesFormatsGranularities, EightBitActivationsMatchReference,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kHalf, torch::kBFloat16),
                                            ::testing::Values(bittorch::quant::ActivationFormat::Int8,
                                                              bittorch::quant::ActivationFormat::Float8E4M3),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(c10::toString(std::get<0>(info.param))) + "_" +
                                  bittorch::quant::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_per_channel" : "_global");
                         });

TEST(TernaryLinear, ActivationBitsOptionUsesInt8OnTheCpu) {
  torch::manual_seed(7);
  const auto input = torch::randn({6, 40});
  const auto weight = torch::randn({9, 40});
  const auto bias = torch::randn({9});
  const auto options = F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(8));
  const auto by_option = F::ternary_linear(input, weight, bias, options);
  const auto by_name = bittorch::ops::ternary_linear(input, weight, bias, 0.05, true, "max", "int8");
  EXPECT_TRUE(torch::equal(by_option, by_name));
  EXPECT_FALSE(torch::allclose(by_option, F::ternary_linear(input, weight, bias), 0, 1e-6));
  // The unfused path (quantize, dequantize, torch linear) agrees to float32 rounding.
  const auto unfused = F::ternary_linear(input, weight, bias, F::TernaryLinearFuncOptions(options).fused(false));
  EXPECT_TRUE(torch::allclose(unfused, by_option, 1e-5, 1e-5));
  // Straight-through: the gradients are those of the 16-bit layer.
  auto x1 = input.clone().requires_grad_(), x2 = input.clone().requires_grad_();
  auto w1 = weight.clone().requires_grad_(), w2 = weight.clone().requires_grad_();
  F::ternary_linear(x1, w1, bias, options).sum().backward();
  F::ternary_linear(x2, w2, bias).sum().backward();
  EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad()));
  EXPECT_TRUE(torch::allclose(w1.grad(), w2.grad()));
}

// FP8 e5m2 gradients (gradient_format "float8_e5m2", QuantConfig::gradient_bits(8)) on the
// CPU: grad_input against the formula written here: g' = grad_output * scale[n] and r = max |g'|
// / 57344 in float32, grad_input = e5m2(g' / r) @ codes * r in float64; grad_weight and
// grad_bias those of the unquantized backward, bit for bit.
TEST(TernaryLinear, Float8E5M2GradientsMatchTheFormula) {
  torch::manual_seed(17);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (const bool per_channel : {true, false}) {
      for (const char* activation_format : {"none", "float8_e4m3"}) {
        const auto what = c10::str(dtype, per_channel ? " per channel " : " global ", activation_format);
        const auto x = (torch::randn({2, 5, 48}) * 3).to(dtype);
        const auto w = torch::randn({32, 48}) * 0.1;  // float32 master weight
        const auto b = torch::randn({32}).to(dtype);
        const auto grad = (torch::randn({2, 5, 32}) * torch::logspace(-3, 3, 32)).to(dtype);
        std::vector<torch::Tensor> grads[2];
        for (const bool fp8 : {false, true}) {
          auto xi = x.clone().requires_grad_(), wi = w.clone().requires_grad_(), bi = b.clone().requires_grad_();
          bittorch::ops::ternary_linear(xi, wi, bi, 0.05, per_channel, "max", activation_format,
                                        fp8 ? "float8_e5m2" : "none")
              .backward(grad);
          grads[fp8] = {xi.grad(), wi.grad(), bi.grad()};
        }
        EXPECT_TRUE(torch::equal(grads[1][1], grads[0][1])) << what << " grad_weight";
        EXPECT_TRUE(torch::equal(grads[1][2], grads[0][2])) << what << " grad_bias";

        const auto q = reference_ternarize(w, 0.05, per_channel, false, torch::kFloat);
        // The scaling in float32, as the format is defined; the product in float64.
        const auto folded = grad.reshape({-1, 32}).to(torch::kFloat) *
                            (per_channel ? q.scale.to(torch::kFloat).reshape({1, -1}) : q.scale.to(torch::kFloat));
        const auto r = folded.abs().max() / 57344.0F;
        const auto values = (folded / r).to(torch::kFloat8_e5m2).to(torch::kDouble);
        const auto expected = (values.mm(q.codes.to(torch::kDouble)) * r.to(torch::kDouble)).reshape({2, 5, 48});
        const double magnitude = expected.abs().max().item<double>();
        // float32 sums of 32 products (bfloat16 output: its rounding).
        const double tolerance = dtype == torch::kFloat ? 1e-5 : 1e-2;
        EXPECT_LE((grads[1][0].to(torch::kDouble) - expected).abs().max().item<double>(), tolerance * magnitude)
            << what << " grad_input";
        // It is quantized: not the unquantized gradient.
        EXPECT_GT((grads[1][0] - grads[0][0]).abs().max().item<double>(), 1e-3 * magnitude) << what;
      }
    }
  }
  // The format's errors: a name it does not know, a float64 gradient.
  const auto x = torch::randn({2, 8}).requires_grad_();
  const auto w = torch::randn({4, 8});
  EXPECT_THROW(bittorch::ops::ternary_linear(x, w, std::nullopt, 0.05, true, "max", "none", "float8_e4m3"), c10::Error);
  auto x64 = torch::randn({2, 8}, torch::kDouble).requires_grad_();
  const auto y =
      bittorch::ops::ternary_linear(x64, w.to(torch::kDouble), std::nullopt, 0.05, true, "max", "none", "float8_e5m2");
  try {
    y.sum().backward();
    ADD_FAILURE() << "expected an error for float64 gradients";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find("FP8 gradients"), std::string::npos) << error.what();
  }
  // Through the layer's option, kept weights included.
  bittorch::nn::TernaryLinear layer(
      bittorch::nn::TernaryLinearOptions(8, 4).quant(bittorch::quant::QuantConfig().gradient_bits(8)));
  auto xl = torch::randn({3, 8}).requires_grad_(), xk = xl.detach().clone().requires_grad_();
  layer(xl).sum().backward();
  {
    bittorch::nn::KeepQuantizedWeights keep;
    layer(xk).sum().backward();
  }
  auto xo = xl.detach().clone().requires_grad_();
  bittorch::ops::ternary_linear(xo, layer->weight, layer->bias, 0.05, true, "max", "none", "float8_e5m2")
      .sum()
      .backward();
  EXPECT_TRUE(torch::equal(xl.grad(), xo.grad()));
  EXPECT_TRUE(torch::equal(xk.grad(), xo.grad()));
  EXPECT_THROW(F::ternary_linear(
                   xo, layer->weight, layer->bias,
                   F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().gradient_bits(8)).fused(false)),
               c10::Error);
  EXPECT_FALSE(bittorch::quant::find_problem(bittorch::quant::QuantConfig().gradient_bits(8)).has_value());
  EXPECT_EQ(bittorch::quant::find_problem(bittorch::quant::QuantConfig().gradient_bits(4))->field, "gradient_bits");
}

TEST(TernaryLinear, EightBitWithoutInputGradient) {
  // The first layer of a network: no grad for the input, so the forward keeps no operand.
  const auto input = torch::randn({4, 12});
  auto weight = torch::randn({3, 12}).requires_grad_();
  F::ternary_linear(input, weight, {},
                    F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(8)))
      .sum()
      .backward();
  auto reference_weight = weight.detach().clone().requires_grad_();
  F::ternary_linear(input, reference_weight).sum().backward();
  EXPECT_TRUE(torch::allclose(weight.grad(), reference_weight.grad()));
}

// ternary_linear_quantized with its input given quantized (input_values, input_scale) is the
// op that quantizes the input itself, output and gradients bit for bit, for both formats and
// a 3-D input; the product reads the values given (another input's values give another
// output), and the checks name the arguments.
TEST(TernaryLinear, TakesItsInputQuantized) {
  torch::manual_seed(12);
  for (const std::string format : {"int8", "float8_e4m3"}) {
    const auto input = torch::randn({2, 3, 16}).requires_grad_();
    const auto weight = torch::randn({5, 16}).requires_grad_();
    const auto bias = torch::randn({5});
    const auto [operand, codes, scale] = bittorch::ops::ternary_linear_quantize_weight(
        weight.detach(), 0.05, true, "max", format, torch::kFloat, /*keep_operand=*/true);
    const auto run = [&, &operand = operand, &codes = codes, &scale = scale](const std::optional<at::Tensor>& values,
                                                                             const std::optional<at::Tensor>& rows) {
      input.mutable_grad() = torch::Tensor();
      weight.mutable_grad() = torch::Tensor();
      const auto y = bittorch::ops::ternary_linear_quantized(input, weight, operand, codes, scale, bias, format, "none",
                                                             values, rows);
      (y * torch::linspace(-1, 1, 5)).sum().backward();
      return std::tuple{y.detach(), input.grad().clone(), weight.grad().clone()};
    };
    const auto [y, grad_input, grad_weight] = run(std::nullopt, std::nullopt);
    const auto [values, rows] = bittorch::ops::quantize_activations(input.detach(), format);
    const auto [given_y, given_grad_input, given_grad_weight] = run(values, rows);
    EXPECT_TRUE(torch::equal(given_y, y)) << format;
    EXPECT_TRUE(torch::equal(given_grad_input, grad_input)) << format;
    EXPECT_TRUE(torch::equal(given_grad_weight, grad_weight)) << format;
    const auto [other_values, other_rows] = bittorch::ops::quantize_activations(input.detach().flip(-1), format);
    EXPECT_FALSE(torch::allclose(std::get<0>(run(other_values, other_rows)), y)) << format;

    const auto call = [&, &operand = operand, &codes = codes, &scale = scale](const std::optional<at::Tensor>& v,
                                                                              const std::optional<at::Tensor>& r,
                                                                              const std::string& activation_format) {
      return [&, v, r, activation_format] {
        bittorch::ops::ternary_linear_quantized(input, weight, operand, codes, scale, bias, activation_format, "none",
                                                v, r);
      };
    };
    EXPECT_TRUE(throws_error_mentioning(call(values, std::nullopt, format),
                                        {"bittorch::ternary_linear_quantized", "input_values and input_scale"}));
    EXPECT_TRUE(throws_error_mentioning(call(values.narrow(1, 0, 2), rows, format), {"input_values", "[2, 3, 16]"}));
    EXPECT_TRUE(throws_error_mentioning(call(values, rows.squeeze(-1), format), {"input_scale", "[2, 3, 1]"}));
    EXPECT_TRUE(throws_error_mentioning(call(values.to(torch::kFloat), rows, format), {"input_values", "dtype"}));
  }
  const auto input = torch::randn({2, 16});
  const auto [operand, codes, scale] = bittorch::ops::ternary_linear_quantize_weight(
      torch::randn({5, 16}), 0.05, true, "max", "none", torch::kFloat, true);
  const auto [values, rows] = bittorch::ops::quantize_activations(input, "int8");
  EXPECT_TRUE(throws_error_mentioning(
      [&, &operand = operand, &codes = codes, &scale = scale, &values = values, &rows = rows] {
        bittorch::ops::ternary_linear_quantized(input, torch::randn({5, 16}), operand, codes, scale, std::nullopt,
                                                "none", "none", values, rows);
      },
      {"need an 8-bit activation format"}));
}

// A transposed input against its contiguous copy and against the reference. Not bit for bit:
// the BLAS that torch's linear calls may take another kernel for another layout (seen on an
// AMD EPYC: 5e-7 apart in float32), so within the float32 tolerance.
TEST(TernaryLinear, NonContiguousInput) {
  torch::manual_seed(4);
  for (const auto dtype : {torch::kFloat, torch::kDouble}) {
    const auto base = torch::randn({9, 6}, dtype);
    const auto input = base.t();  // [6, 9], non-contiguous
    ASSERT_FALSE(input.is_contiguous());
    const auto weight = torch::randn({5, 9}, dtype);
    const auto output = F::ternary_linear(input, weight);
    const auto ref = reference_ternary_linear(
        input, weight, {}, {}, reference_ternarize(weight, 0.05, true, false, reference_scale_dtype(dtype)));
    expect_close(output, ref.output, dtype, c10::str("transposed input, ", dtype));
    expect_close(output, F::ternary_linear(input.contiguous(), weight).to(torch::kDouble), dtype,
                 c10::str("transposed against contiguous, ", dtype));
  }
}

// The quantizer refuses non-finite weights, naming how many and the first one; the fused
// training op does not read the weight to check it (that would synchronise every step), so
// there a NaN weight gives NaN outputs in its row's column, as the unfused formula does.
TEST(TernaryLinear, NonFiniteWeights) {
  for (const auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    auto weight = torch::randn({3, 4});
    weight[1][2] = std::nanf("");
    const auto options = bittorch::quant::QuantConfig().scale_mode(mode);
    EXPECT_TRUE(throws_error_mentioning([&] { bittorch::nn::functional::ternarize(weight, options); },
                                        {"bittorch::ternarize", "weight", "1 non-finite value", "nan", "[1, 2]"}));
    const auto y =
        F::ternary_linear(torch::randn({5, 4}), weight, {},
                          F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().scale_mode(mode)));
    EXPECT_TRUE(torch::isnan(y.select(1, 1)).all().item<bool>()) << y;
    EXPECT_TRUE(torch::isfinite(y.select(1, 0)).all().item<bool>()) << y;
    weight[1][2] = INFINITY;
    weight[2][0] = -INFINITY;
    EXPECT_TRUE(throws_error_mentioning([&] { bittorch::nn::functional::ternarize(weight, options); },
                                        {"2 non-finite values", "inf", "[1, 2]"}));
  }
}

// A NaN or Inf in an input row makes that row's outputs non-finite, with 16-bit and with
// 8-bit activations (there all NaN: the row has no finite scale); other rows are unaffected.
TEST(TernaryLinear, NonFiniteInputsReachTheirRowOnly) {
  torch::manual_seed(12);
  const auto weight = torch::randn({6, 10});
  for (const char* format : {"none", "int8", "float8_e4m3"}) {
    auto x = torch::randn({3, 10});
    const auto clean = bittorch::ops::ternary_linear(x, weight, std::nullopt, 0.05, true, "max", format);
    x[0][4] = std::nanf("");
    x[1][9] = INFINITY;
    const auto y = bittorch::ops::ternary_linear(x, weight, std::nullopt, 0.05, true, "max", format);
    EXPECT_TRUE(torch::isnan(y[0]).all().item<bool>()) << format << y;
    EXPECT_FALSE(torch::isfinite(y[1]).any().item<bool>()) << format << y;
    if (std::string(format) != "none") EXPECT_TRUE(torch::isnan(y[1]).all().item<bool>()) << format << y;
    EXPECT_TRUE(torch::equal(y[2], clean[2])) << format;
  }
}

// Central finite differences of sum(y * r) against autograd, in float64.
void expect_gradients_match_finite_differences(const F::TernaryLinearFuncOptions& options, bool check_weight_and_bias) {
  torch::manual_seed(5);
  auto input = torch::randn({3, 4}, torch::kDouble).requires_grad_();
  auto weight = torch::randn({2, 4}, torch::kDouble).requires_grad_();
  auto bias = torch::randn({2}, torch::kDouble).requires_grad_();
  const auto r = torch::randn({3, 2}, torch::kDouble);
  const auto loss = [&] { return (F::ternary_linear(input, weight, bias, options) * r).sum(); };
  loss().backward();
  std::vector<torch::Tensor> params = {input};
  if (check_weight_and_bias) params.insert(params.end(), {weight, bias});
  const double eps = 1e-6;
  for (auto& p : params) {
    auto flat = p.detach().view({-1});
    const auto grad = p.grad().view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      torch::NoGradGuard no_grad;
      const double original = flat[i].item<double>();
      flat[i] = original + eps;
      const double plus = loss().item<double>();
      flat[i] = original - eps;
      const double minus = loss().item<double>();
      flat[i] = original;
      EXPECT_NEAR(grad[i].item<double>(), (plus - minus) / (2 * eps), 1e-7) << "element " << i;
    }
  }
}

TEST(TernaryLinear, FiniteDifferencesWithoutQuantization) {
  expect_gradients_match_finite_differences(F::TernaryLinearFuncOptions().quantize(false), true);
}

// With quantization the layer is linear in x, so finite differences hold for grad_x; grad_w
// is the straight-through estimate, checked against the formula elsewhere.
TEST(TernaryLinear, FiniteDifferencesOfInputGradientWithQuantization) {
  for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    expect_gradients_match_finite_differences(
        F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().scale_mode(mode)), false);
  }
}

TEST(TernaryLinear, StraightThroughEstimatorFormula) {
  torch::manual_seed(6);
  for (bool per_channel : {true, false}) {
    auto input = torch::randn({5, 6}, torch::kDouble).requires_grad_();
    auto weight = torch::randn({4, 6}, torch::kDouble).requires_grad_();
    auto bias = torch::randn({4}, torch::kDouble).requires_grad_();
    const auto options = F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().per_channel(per_channel));
    const auto grad_output = torch::randn({5, 4}, torch::kDouble);
    F::ternary_linear(input, weight, bias, options).backward(grad_output);
    const auto [codes, scale] = bittorch::nn::functional::ternarize(weight.detach(), options.quant());
    const auto row_scale = per_channel ? scale.unsqueeze(1) : scale;
    EXPECT_TRUE(torch::allclose(input.grad(), grad_output.mm(codes * row_scale)));
    EXPECT_TRUE(torch::allclose(weight.grad(), row_scale * grad_output.t().mm(input.detach())));
    EXPECT_TRUE(torch::allclose(bias.grad(), grad_output.sum(0)));
  }
}

TEST(TernaryLinear, WithoutQuantizationIsTorchLinearBitForBit) {
  torch::manual_seed(7);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{4, 7}, {2, 3, 7}, {7}}) {
    auto input = torch::randn(shape).requires_grad_();
    auto weight = torch::randn({5, 7}).requires_grad_();
    auto bias = torch::randn({5}).requires_grad_();
    const auto ours = F::ternary_linear(input, weight, bias, F::TernaryLinearFuncOptions().quantize(false));
    const auto grad = torch::randn(ours.sizes());
    auto [gx, gw, gb] = [&] {
      ours.backward(grad);
      auto r = std::make_tuple(input.grad().clone(), weight.grad().clone(), bias.grad().clone());
      input.mutable_grad().reset();
      weight.mutable_grad().reset();
      bias.mutable_grad().reset();
      return r;
    }();
    const auto theirs = torch::nn::functional::linear(input, weight, bias);
    theirs.backward(grad);
    EXPECT_TRUE(torch::equal(ours, theirs));
    EXPECT_TRUE(torch::equal(gx, input.grad()));
    EXPECT_TRUE(torch::equal(gw, weight.grad()));
    EXPECT_TRUE(torch::equal(gb, bias.grad()));
  }
}

TEST(TernaryLinear, UnfusedPathMatchesTheOp) {
  torch::manual_seed(8);
  for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    for (bool per_channel : {true, false}) {
      const auto options =
          F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().scale_mode(mode).per_channel(per_channel));
      auto x1 = torch::randn({6, 10}).requires_grad_();
      auto w1 = torch::randn({3, 10}).requires_grad_();
      auto b1 = torch::randn({3}).requires_grad_();
      auto x2 = x1.detach().clone().requires_grad_();
      auto w2 = w1.detach().clone().requires_grad_();
      auto b2 = b1.detach().clone().requires_grad_();
      const auto y1 = F::ternary_linear(x1, w1, b1, options);
      const auto y2 = F::ternary_linear(x2, w2, b2, F::TernaryLinearFuncOptions(options).fused(false));
      const auto g = torch::randn(y1.sizes());
      y1.backward(g);
      y2.backward(g);
      EXPECT_TRUE(torch::allclose(y1, y2));
      EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad()));
      EXPECT_TRUE(torch::allclose(w1.grad(), w2.grad()));
      EXPECT_TRUE(torch::allclose(b1.grad(), b2.grad()));
    }
  }
}

TEST(TernaryLinear, InferenceModeAndNoGrad) {
  torch::manual_seed(9);
  const auto input = torch::randn({3, 4});
  auto weight = torch::randn({2, 4}).requires_grad_();
  const auto with_grad = F::ternary_linear(input, weight);
  {
    torch::NoGradGuard no_grad;
    const auto y = F::ternary_linear(input, weight);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(torch::equal(y, with_grad.detach()));
  }
  {
    c10::InferenceMode inference;
    const auto y = F::ternary_linear(input, weight);
    EXPECT_TRUE(torch::equal(y, with_grad.detach()));
  }
}

TEST(TernaryLinear, MetaTensorsGiveShapes) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  auto input = torch::empty({2, 5, 7}, meta).requires_grad_();
  auto weight = torch::empty({3, 7}, meta).requires_grad_();
  auto bias = torch::empty({3}, meta).requires_grad_();
  const auto y = F::ternary_linear(input, weight, bias);
  EXPECT_TRUE(y.is_meta());
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 5, 3}));
  y.backward(torch::empty_like(y));
  EXPECT_EQ(input.grad().sizes(), input.sizes());
  EXPECT_EQ(weight.grad().sizes(), weight.sizes());
  EXPECT_EQ(bias.grad().sizes(), bias.sizes());
  // 8-bit activations: the same shapes.
  auto input8 = torch::empty({2, 5, 7}, meta).requires_grad_();
  const auto y8 = bittorch::ops::ternary_linear(input8, weight, bias, 0.05, true, "max", "float8_e4m3");
  EXPECT_EQ(y8.sizes(), torch::IntArrayRef({2, 5, 3}));
  y8.backward(torch::empty_like(y8));
  EXPECT_EQ(input8.grad().sizes(), input8.sizes());
}

TEST(TernaryLinear, RejectsBadInputs) {
  const auto weight = torch::randn({3, 4});
  const auto bias = torch::randn({3});
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 5}), weight, bias);
      },
      {"in_features = 4", "[2, 5]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::ones({2, 4}, torch::kLong), weight);
      },
      {"input", "floating point", "Long"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::ones({2, 4}, torch::kBool), weight);
      },
      {"input", "floating point", "Bool"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}, torch::kDouble), weight);
      },
      {"same dtype", "Double", "Float"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}, torch::kDouble), weight, {}, F::TernaryLinearFuncOptions().fused(false));
      },
      {"same dtype", "Double", "Float"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::empty({2, 4}, torch::TensorOptions().device(torch::kMeta)), weight);
      },
      {"same device", "meta", "cpu"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}), torch::randn({3, 4, 1}));
      },
      {"weight to be 2-D", "3-D"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}), weight, torch::randn({4}));
      },
      {"bias of shape [3]", "[4]"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}), weight, bias,
                          F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().threshold_factor(2)));
      },
      {"threshold_factor in [0, 1]", "2"}));
  EXPECT_TRUE(throws_error_mentioning([&] { F::ternary_linear(torch::tensor(1.0f), weight); }, {"0-D"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}), weight, bias,
                          F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(4)));
      },
      {"activation_bits", "4"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        F::ternary_linear(torch::randn({2, 4}, torch::kDouble), weight.to(torch::kDouble), {},
                          F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(8)));
      },
      {"8-bit activations", "Double"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::ternary_linear(torch::randn({2, 4}), weight, bias, 0.05, true, "max", "int4");
      },
      {"activation_format", "int4"}));
}

}  // namespace
