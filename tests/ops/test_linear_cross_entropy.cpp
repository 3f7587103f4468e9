// bittorch::linear_cross_entropy against a float64 reference written here from its formulas
// (loss, gradients of input and weight), over odd shapes, chunk sizes that do and do not divide
// the rows, ignored targets and every dtype; Meta shapes; and its argument checks.

#include "reference.h"

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bittorch::testing::throws_error_mentioning;

struct Reference {
  double loss;
  torch::Tensor grad_input, grad_weight;  // float64, of the loss
};

// loss = mean over valid rows of lse_i - z_i[t_i], z = x W^T, lse_i = m_i + log sum_j exp(z_ij - m_i);
// d loss / d z_ij = (exp(z_ij - lse_i) - [j == t_i]) / count on valid rows, 0 on the others.
Reference reference(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& target,
                    int64_t ignore_index) {
  const auto x = input.to(torch::kDouble).reshape({-1, input.size(-1)});
  const auto w = weight.to(torch::kDouble);
  const auto t = target.reshape({-1});
  const auto z = x.matmul(w.t());
  auto d = torch::zeros_like(z);
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < z.size(0); ++i) {
    const int64_t target_class = t[i].item<int64_t>();
    if (target_class == ignore_index) continue;
    const double m = z[i].max().item<double>();
    const double lse = m + std::log((z[i] - m).exp().sum().item<double>());
    total += lse - z[i][target_class].item<double>();
    d[i] = (z[i] - lse).exp();
    d[i][target_class] -= 1.0;
    ++count;
  }
  d /= static_cast<double>(count);
  return {total / static_cast<double>(count), d.matmul(w).view(input.sizes()), d.t().matmul(x)};
}

double tolerance(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kDouble:
      return 1e-10;
    case torch::kFloat:
      return 1e-5;
    default:
      return 3e-2;  // 16-bit inputs and products
  }
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double tol, const std::string& what) {
  const double error = (actual.to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(error, tol * std::max(1.0, expected.abs().max().item<double>())) << what;
}

TEST(LinearCrossEntropy, MatchesTheReferenceForwardAndBackward) {
  struct Case {
    std::vector<int64_t> leading;
    int64_t features, classes, chunk_rows;
  };
  const std::vector<Case> cases = {{{1}, 3, 2, 0},     {{7}, 5, 11, 0},    {{7}, 5, 11, 1},      {{33}, 16, 257, 4},
                                   {{33}, 16, 257, 7}, {{2, 3}, 9, 13, 5}, {{4, 5}, 8, 300, 100}};
  for (const auto dtype : {torch::kDouble, torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& c : cases) {
      torch::manual_seed(11);
      auto shape = c.leading;
      shape.push_back(c.features);
      const auto input = torch::randn(shape, torch::kDouble).to(dtype).requires_grad_();
      const auto weight = (torch::randn({c.classes, c.features}, torch::kDouble) * 0.5).to(dtype).requires_grad_();
      auto target = torch::randint(0, c.classes, c.leading, torch::kLong);
      if (target.numel() > 2) target.view({-1})[1] = -100;  // an ignored row
      const auto loss = bittorch::ops::linear_cross_entropy(input, weight, target, -100, c.chunk_rows);
      (loss * 2.5).backward();
      const auto ref = reference(input.detach(), weight.detach(), target, -100);
      const std::string where = std::string(c10::toString(dtype)) + " rows " + std::to_string(target.numel()) + ", " +
                                std::to_string(c.features) + " -> " + std::to_string(c.classes) + ", chunk " +
                                std::to_string(c.chunk_rows);
      EXPECT_EQ(loss.scalar_type(), dtype == torch::kDouble ? torch::kDouble : torch::kFloat) << where;
      EXPECT_NEAR(loss.item<double>(), ref.loss, tolerance(dtype) * std::max(1.0, std::abs(ref.loss))) << where;
      expect_close(input.grad(), 2.5 * ref.grad_input, tolerance(dtype), "grad_input, " + where);
      expect_close(weight.grad(), 2.5 * ref.grad_weight, tolerance(dtype), "grad_weight, " + where);
      EXPECT_EQ(input.grad().scalar_type(), dtype);
      EXPECT_EQ(weight.grad().scalar_type(), dtype);
    }
  }
}

TEST(LinearCrossEntropy, EqualsCrossEntropyOfTheLinearLayerAndOnlyScalesInTheBackward) {
  torch::manual_seed(12);
  const auto input = torch::randn({10, 6}, torch::kDouble);
  const auto weight = torch::randn({4, 6}, torch::kDouble).requires_grad_();
  const auto target = torch::randint(0, 4, {10}, torch::kLong);
  const auto fused = bittorch::ops::linear_cross_entropy(input, weight, target, -100, 3);
  const auto plain = torch::nn::functional::cross_entropy(torch::nn::functional::linear(input, weight), target);
  EXPECT_NEAR(fused.item<double>(), plain.item<double>(), 1e-12);
  // Only the weight requires a gradient: the input gets none.
  const auto grads = torch::autograd::grad({fused}, {weight});
  const auto plain_grads = torch::autograd::grad({plain}, {weight});
  EXPECT_TRUE(torch::allclose(grads[0], plain_grads[0], 1e-10, 1e-12));
  // Under NoGradGuard (evaluation) the loss is the same and nothing is recorded.
  {
    const torch::NoGradGuard no_grad;
    const auto evaluated = bittorch::ops::linear_cross_entropy(input, weight, target, -100, 3);
    EXPECT_FALSE(evaluated.requires_grad());
    EXPECT_NEAR(evaluated.item<double>(), plain.item<double>(), 1e-12);
  }
  // Without gradients the forward makes none.
  const auto [loss, grad_input, grad_weight] =
      bittorch::ops::_linear_cross_entropy_forward(input, weight.detach(), target, -100, 0, false);
  EXPECT_FALSE(grad_input.defined() || grad_weight.defined());
  EXPECT_NEAR(loss.item<double>(), plain.item<double>(), 1e-12);
}

TEST(LinearCrossEntropy, NoValidTargetGivesNanAsCrossEntropyDoes) {
  const auto input = torch::randn({3, 4});
  const auto weight = torch::randn({5, 4});
  const auto target = torch::full({3}, -1, torch::kLong);
  EXPECT_TRUE(std::isnan(bittorch::ops::linear_cross_entropy(input, weight, target, -1).item<double>()));
  EXPECT_TRUE(
      std::isnan(torch::nn::functional::cross_entropy(input.matmul(weight.t()), target,
                                                      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1))
                     .item<double>()));
}

TEST(LinearCrossEntropy, MetaTensorsGiveShapes) {
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  const auto [loss, grad_input, grad_weight] =
      bittorch::ops::_linear_cross_entropy_forward(torch::empty({2, 3, 8}, meta), torch::empty({5, 8}, meta),
                                                   torch::empty({2, 3}, meta.dtype(torch::kLong)), -100, 0, true);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_EQ(grad_input.sizes(), torch::IntArrayRef({2, 3, 8}));
  EXPECT_EQ(grad_weight.sizes(), torch::IntArrayRef({5, 8}));
}

TEST(LinearCrossEntropy, RefusesBadArgumentsNamingThem) {
  const auto x = torch::randn({4, 6}), w = torch::randn({5, 6});
  const auto t = torch::randint(0, 5, {4}, torch::kLong);
  using bittorch::ops::linear_cross_entropy;
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        linear_cross_entropy(x, torch::randn({5, 7}), t);
      },
      {"weight [classes, 6]"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { linear_cross_entropy(x, w.to(torch::kDouble), t); }, {"share the input's dtype"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { linear_cross_entropy(x, w, t.narrow(0, 0, 3)); }, {"targets of shape [4]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { linear_cross_entropy(x, w, t.to(torch::kInt)); }, {"int64 targets"}));
  EXPECT_TRUE(throws_error_mentioning([&] { linear_cross_entropy(x, w, t, -100, -1); }, {"chunk_rows must be >= 0"}));
  auto bad = t.clone();
  bad[2] = 5;
  EXPECT_TRUE(
      throws_error_mentioning([&] { linear_cross_entropy(x, w, bad); }, {"target 5", "flat index 2", "[0, 5)"}));
}

}  // namespace
