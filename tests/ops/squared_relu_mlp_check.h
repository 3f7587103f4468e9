#pragma once

// bittorch::squared_relu_mlp against its formulas in float64, forward and backward, on one
// device: the CPU and the CUDA tests run the same check on their own shapes.

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace bittorch::testing {

struct SquaredReluMlpCase {
  std::vector<int64_t> input_shape;  // [*, features]
  int64_t hidden, out;
};

/// The largest difference from the float64 reference, relative to the reference's largest
/// magnitude.
inline double relative_error(const torch::Tensor& value, const torch::Tensor& reference) {
  const auto r = reference.to(torch::kDouble);
  return (value.cpu().to(torch::kDouble) - r).abs().max().item<double>() /
         std::max(1e-30, r.abs().max().item<double>());
}

/// The op's output and gradients (of a random linear function of the output) against
/// y = max(x @ up^T, 0)^2 @ down^T and its derivatives written out in float64, with the
/// operands rounded to `dtype` first. `tol` bounds the relative error of each.
inline void expect_squared_relu_mlp_matches_the_formula(const SquaredReluMlpCase& c, torch::Dtype dtype,
                                                        torch::Device device, double tol) {
  const int64_t features = c.input_shape.back();
  const auto on = torch::TensorOptions().dtype(dtype).device(device);
  const auto random = [&](std::vector<int64_t> shape, double scale) {
    return (torch::randn(shape, torch::kDouble) * scale).to(dtype);
  };
  // Weights of unit-variance products: the hidden activation and the output stay near 1.
  const auto x = random(c.input_shape, 1.0), up = random({c.hidden, features}, 1.0 / std::sqrt(features));
  const auto down = random({c.out, c.hidden}, 1.0 / std::sqrt(c.hidden));
  const auto x_op = x.to(device).requires_grad_(), up_op = up.to(device).requires_grad_();
  const auto down_op = down.to(device).requires_grad_();
  const auto y = bittorch::ops::squared_relu_mlp(x_op, up_op, down_op);
  auto out_shape = c.input_shape;
  out_shape.back() = c.out;
  const auto g = random(out_shape, 1.0);
  y.backward(g.to(on.device()));

  const auto xd = x.to(torch::kDouble).reshape({-1, features}), ud = up.to(torch::kDouble);
  const auto dd = down.to(torch::kDouble), gd = g.to(torch::kDouble).reshape({-1, c.out});
  const auto h = xd.mm(ud.t());
  const auto a = h.clamp_min(0).pow(2);
  const auto grad_h = gd.mm(dd) * 2 * h.clamp_min(0);
  const std::string what = std::string(c10::toString(dtype)) + " on " + device.str() + ", input " +
                           c10::str(torch::IntArrayRef(c.input_shape)) + ", hidden " + std::to_string(c.hidden);
  EXPECT_EQ(y.scalar_type(), dtype) << what;
  EXPECT_EQ(y.sizes(), torch::IntArrayRef(out_shape)) << what;
  if (xd.size(0) == 0) return;
  EXPECT_LE(relative_error(y.reshape({-1, c.out}), a.mm(dd.t())), tol) << "output, " << what;
  EXPECT_LE(relative_error(x_op.grad().reshape({-1, features}), grad_h.mm(ud)), tol) << "grad_input, " << what;
  EXPECT_LE(relative_error(up_op.grad(), grad_h.t().mm(xd)), tol) << "grad_up_weight, " << what;
  EXPECT_LE(relative_error(down_op.grad(), gd.t().mm(a)), tol) << "grad_down_weight, " << what;
}

/// A NaN in one input row makes that row's output NaN (the activation keeps NaN, as
/// torch.relu does, rather than turning it into 0) and leaves the other rows finite.
inline void expect_squared_relu_mlp_keeps_nan(const SquaredReluMlpCase& c, torch::Dtype dtype, torch::Device device) {
  const int64_t features = c.input_shape.back();
  const auto on = torch::TensorOptions().dtype(dtype).device(device);
  auto x = torch::randn(c.input_shape).to(on);
  x.view({-1, features})[1][features / 2] = std::numeric_limits<float>::quiet_NaN();
  const auto up = (torch::randn({c.hidden, features}) / std::sqrt(features)).to(on);
  const auto down = (torch::randn({c.out, c.hidden}) / std::sqrt(c.hidden)).to(on);
  const auto y = bittorch::ops::squared_relu_mlp(x, up, down).reshape({-1, c.out}).cpu();
  const std::string what = std::string(c10::toString(dtype)) + " on " + device.str();
  EXPECT_TRUE(y[1].isnan().all().item<bool>()) << what;
  EXPECT_TRUE(y[0].isfinite().all().item<bool>() && y.slice(0, 2).isfinite().all().item<bool>()) << what;
}

}  // namespace bittorch::testing
