// bittorch::add_rms_norm against float64 references: the forward and both gradients from the
// formulas, and autograd through the plain composition (x + r, then RMSNorm) in float64; odd
// widths, leading dimensions, mixed dtypes (a float32 stream plus a bfloat16 branch); Meta
// shapes; the unused-output cases; argument checks.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

// sum = x + r; n = sum / sqrt(mean(sum^2) + eps); output = n * w. For the objective
// <gy, output> + <gs, sum>: d/dsum = gs + rstd * (gy * w - n * mean(gy * w * n)),
// d/dw = sum over rows of gy * n.
struct Reference {
  torch::Tensor output, sum, grad_sum, grad_weight;
};

Reference reference(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& w, double eps,
                    const torch::Tensor& gy, const torch::Tensor& gs) {
  const auto sum = x.to(torch::kDouble) + r.to(torch::kDouble);
  const auto rstd = 1.0 / (sum.square().mean(-1, true) + eps).sqrt();
  const auto n = sum * rstd;
  const auto wd = w.to(torch::kDouble), gyd = gy.to(torch::kDouble);
  const auto g = gyd * wd;
  const auto grad_sum = gs.to(torch::kDouble) + rstd * (g - n * (g * n).mean(-1, true));
  return {n * wd, sum, grad_sum, (gyd * n).reshape({-1, w.size(0)}).sum(0)};
}

double tolerance(torch::ScalarType dtype) {
  return dtype == torch::kDouble ? 1e-10 : dtype == torch::kFloat ? 1e-5 : 3e-2;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double tol, const std::string& what) {
  const double error = (actual.to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(error, tol * std::max(1.0, expected.abs().max().item<double>())) << what << ": error " << error;
}

TEST(AddRmsNorm, MatchesTheReferenceForwardAndBackward) {
  struct Case {
    std::vector<int64_t> shape;
    torch::ScalarType input, residual, weight;
  };
  const std::vector<Case> cases = {
      {{1, 1}, torch::kDouble, torch::kDouble, torch::kDouble},
      {{7, 5}, torch::kDouble, torch::kDouble, torch::kDouble},
      {{2, 3, 33}, torch::kFloat, torch::kFloat, torch::kFloat},
      {{4, 257}, torch::kFloat, torch::kBFloat16, torch::kFloat},  // float32 stream, bfloat16 branch
      {{4, 96}, torch::kBFloat16, torch::kFloat, torch::kFloat},
      {{3, 64}, torch::kBFloat16, torch::kBFloat16, torch::kFloat},
      {{3, 64}, torch::kHalf, torch::kHalf, torch::kHalf},
      {{5, 40}, torch::kHalf, torch::kBFloat16, torch::kFloat},  // promoted to float32
  };
  for (const auto& c : cases) {
    torch::manual_seed(21);
    const auto x = torch::randn(c.shape, torch::kDouble).to(c.input).requires_grad_();
    const auto r = torch::randn(c.shape, torch::kDouble).to(c.residual).requires_grad_();
    const auto w = (1 + 0.3 * torch::randn({c.shape.back()}, torch::kDouble)).to(c.weight).requires_grad_();
    const auto [output, sum] = bittorch::ops::add_rms_norm(x, r, w, 1e-5);
    const auto sum_dtype = torch::promote_types(c.input, c.residual);
    const auto gy = torch::randn(c.shape, torch::kDouble).to(sum_dtype),
               gs = torch::randn(c.shape, torch::kDouble).to(sum_dtype);
    ((output * gy).sum() + (sum * gs).sum()).backward();
    const auto ref = reference(x.detach(), r.detach(), w.detach(), 1e-5, gy, gs);
    const std::string where = std::string(c10::toString(c.input)) + " + " + c10::toString(c.residual) + ", weight " +
                              c10::toString(c.weight) + ", " + std::to_string(c.shape.back()) + " features";
    const double tol = tolerance(sum_dtype == torch::kDouble                                 ? torch::kDouble
                                 : (c.input == torch::kFloat && c.residual == torch::kFloat) ? torch::kFloat
                                                                                             : torch::kBFloat16);
    EXPECT_EQ(output.scalar_type(), sum_dtype) << where;
    EXPECT_EQ(sum.scalar_type(), sum_dtype) << where;
    expect_close(output, ref.output, tol, "output, " + where);
    expect_close(sum, ref.sum, tol, "sum, " + where);
    expect_close(x.grad(), ref.grad_sum, tol, "grad_input, " + where);
    expect_close(r.grad(), ref.grad_sum, tol, "grad_residual, " + where);
    expect_close(w.grad(), ref.grad_weight, tol * 4, "grad_weight, " + where);
    EXPECT_EQ(x.grad().scalar_type(), c.input) << where;
    EXPECT_EQ(r.grad().scalar_type(), c.residual) << where;
    EXPECT_EQ(w.grad().scalar_type(), c.weight) << where;
  }
}

TEST(AddRmsNorm, GradientsEqualAutogradOfThePlainComposition) {
  torch::manual_seed(22);
  const auto x = torch::randn({3, 4, 10}, torch::kDouble).requires_grad_();
  const auto r = torch::randn({3, 4, 10}, torch::kDouble).requires_grad_();
  const auto w = torch::randn({10}, torch::kDouble).requires_grad_();
  const auto gy = torch::randn({3, 4, 10}, torch::kDouble), gs = torch::randn({3, 4, 10}, torch::kDouble);
  const auto objective = [&](const torch::Tensor& output, const torch::Tensor& sum) {
    return (output * gy).sum() + (sum * gs).sum();
  };
  const auto [output, sum] = bittorch::ops::add_rms_norm(x, r, w, 1e-6);
  const auto fused = torch::autograd::grad({objective(output, sum)}, {x, r, w}, {}, /*retain_graph=*/true);
  const auto plain_sum = x + r;
  const auto plain =
      torch::autograd::grad({objective(torch::rms_norm(plain_sum, {10}, w, 1e-6), plain_sum)}, {x, r, w});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(fused[i], plain[i], 1e-10, 1e-12)) << "gradient " << i;
  // Only one output used: the other's gradient arrives undefined.
  const auto only_output = torch::autograd::grad({(output * gy).sum()}, {x}, {}, /*retain_graph=*/true);
  const auto only_plain = torch::autograd::grad({(torch::rms_norm(x + r, {10}, w, 1e-6) * gy).sum()}, {x});
  EXPECT_TRUE(torch::allclose(only_output[0], only_plain[0], 1e-10, 1e-12));
  const auto only_sum = torch::autograd::grad({(sum * gs).sum()}, {x});
  EXPECT_TRUE(torch::allclose(only_sum[0], gs, 1e-12, 1e-12));
}

// output_dtype rounds the arithmetic's float32 result once, to the same values as the float32
// output cast after; a gradient arriving in that dtype gives the gradients it gives cast up.
TEST(AddRmsNorm, OutputDtypeRoundsTheFloatOutputOnce) {
  torch::manual_seed(23);
  const auto x = torch::randn({5, 3, 72});
  const auto r = torch::randn({5, 3, 72}).to(torch::kBFloat16);
  const auto w = 1 + 0.3 * torch::randn({72});
  const auto run = [&](std::optional<torch::ScalarType> output_dtype, const torch::Tensor& gy,
                       const torch::Tensor& gs) {
    auto xg = x.clone().requires_grad_(), rg = r.clone().requires_grad_(), wg = w.clone().requires_grad_();
    auto [output, sum] = bittorch::ops::add_rms_norm(xg, rg, wg, 1e-6, output_dtype);
    torch::autograd::backward({output, sum}, {gy, gs});
    return std::vector<torch::Tensor>{output.detach(), sum.detach(), xg.grad(), rg.grad(), wg.grad()};
  };
  const auto gs = torch::randn({5, 3, 72});
  for (const auto dtype : {torch::kBFloat16, torch::kHalf, torch::kDouble}) {
    const auto gy = torch::randn({5, 3, 72}).to(dtype);
    const auto narrowed = run(dtype, gy, gs), plain = run(std::nullopt, gy.to(torch::kFloat), gs);
    const std::string where = c10::toString(dtype);
    EXPECT_EQ(narrowed[0].scalar_type(), dtype) << where;
    EXPECT_EQ(narrowed[1].scalar_type(), torch::kFloat) << where;
    EXPECT_TRUE(torch::equal(narrowed[0], plain[0].to(dtype))) << where;
    for (size_t i = 1; i < narrowed.size(); ++i) EXPECT_TRUE(torch::equal(narrowed[i], plain[i])) << where << " " << i;
  }
}

// narrow_dtype: the sum's gradient rounded to it, the same values as the cast after; not
// written where the sum's gradient is not wanted.
TEST(AddRmsNorm, BackwardWritesTheNarrowGradientAsTheCast) {
  torch::manual_seed(24);
  const auto sum = torch::randn({6, 40}), gy = torch::randn({6, 40}).to(torch::kBFloat16), gs = torch::randn({6, 40});
  const auto w = 1 + 0.3 * torch::randn({40});
  const auto rstd = 1.0 / (sum.square().mean(-1) + 1e-6).sqrt();
  for (const auto dtype : {torch::kBFloat16, torch::kHalf, torch::kDouble}) {
    const auto [grad_sum, grad_weight, narrow] =
        bittorch::ops::_add_rms_norm_backward(gy, gs, sum, w, rstd, {true, true}, dtype);
    EXPECT_EQ(narrow.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(narrow, grad_sum.to(dtype))) << c10::toString(dtype);
  }
  const auto [unused, grad_weight, none] =
      bittorch::ops::_add_rms_norm_backward(gy, gs, sum, w, rstd, {false, true}, torch::kBFloat16);
  EXPECT_FALSE(none.defined());
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::ops::_add_rms_norm_backward(gy, gs, sum, w, rstd, {true, true}, torch::kInt);
      },
      {"narrow_dtype float32, float64, float16 or bfloat16"}));
}

TEST(AddRmsNorm, MetaTensorsGiveShapesAndDtypes) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto [output, sum, rstd] = bittorch::ops::_add_rms_norm_forward(
      torch::empty({2, 3, 8}, meta), torch::empty({2, 3, 8}, meta.dtype(torch::kBFloat16)), torch::empty({8}, meta),
      1e-6);
  EXPECT_EQ(output.sizes(), torch::IntArrayRef({2, 3, 8}));
  EXPECT_EQ(sum.scalar_type(), torch::kFloat);
  EXPECT_EQ(rstd.sizes(), torch::IntArrayRef({2, 3}));
  const auto narrowed = std::get<0>(bittorch::ops::_add_rms_norm_forward(
      torch::empty({2, 8}, meta), torch::empty({2, 8}, meta), torch::empty({8}, meta), 1e-6, torch::kBFloat16));
  EXPECT_EQ(narrowed.scalar_type(), torch::kBFloat16);
}

TEST(AddRmsNorm, RefusesBadArgumentsNamingThem) {
  const auto x = torch::randn({4, 6});
  using bittorch::ops::add_rms_norm;
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        add_rms_norm(x, torch::randn({4, 5}), torch::ones({6}));
      },
      {"residual of the input's shape [4, 6]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { add_rms_norm(x, x, torch::ones({5})); }, {"weight [6]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { add_rms_norm(x, x, torch::ones({6}, torch::kDouble)); },
                                      {"float32 weight or one of the sum's dtype"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { add_rms_norm(x, x, torch::ones({6}), 0.0); }, {"eps must be finite and > 0"}));
  EXPECT_TRUE(throws_error_mentioning([&] { add_rms_norm(x, x, torch::ones({6}), 1e-6, torch::kInt); },
                                      {"output_dtype float32, float64, float16 or bfloat16", "Int"}));
  EXPECT_TRUE(throws_error_mentioning([&] { add_rms_norm(x.to(torch::kInt), x.to(torch::kInt), torch::ones({6})); },
                                      {"bittorch::add_rms_norm"}));
}

}  // namespace
