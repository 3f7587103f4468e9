// bittorch::add_rms_norm: schema, typed entries and argument checks.

#include "ops/add_rms_norm/add_rms_norm.h"

#include <bittorch/ops/add_rms_norm.h>

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // sum = input + residual and output = rms_norm(sum) * weight, in one op.
  m.def(
      "add_rms_norm(Tensor input, Tensor residual, Tensor weight, float eps=1e-06, ScalarType? output_dtype=None) -> "
      "(Tensor output, Tensor sum)");
  m.def(
      "_add_rms_norm_forward(Tensor input, Tensor residual, Tensor weight, float eps, ScalarType? output_dtype=None) "
      "-> (Tensor output, Tensor sum, Tensor rstd)");
  m.def(
      "_add_rms_norm_backward(Tensor grad_output, Tensor? grad_sum_in, Tensor sum, Tensor weight, Tensor rstd, "
      "bool[2] output_mask, ScalarType? narrow_dtype=None) -> (Tensor grad_sum, Tensor grad_weight, Tensor "
      "grad_sum_narrow)");
}

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                const at::Tensor& weight, double eps,
                                                std::optional<at::ScalarType> output_dtype) {
  static const auto op = find_op<decltype(add_rms_norm)>("bittorch::add_rms_norm");
  return op.call(input, residual, weight, eps, output_dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> _add_rms_norm_forward(const at::Tensor& input,
                                                                     const at::Tensor& residual,
                                                                     const at::Tensor& weight, double eps,
                                                                     std::optional<at::ScalarType> output_dtype) {
  static const auto op = find_op<decltype(_add_rms_norm_forward)>("bittorch::_add_rms_norm_forward");
  return op.call(input, residual, weight, eps, output_dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> _add_rms_norm_backward(const at::Tensor& grad_output,
                                                                      const std::optional<at::Tensor>& grad_sum_in,
                                                                      const at::Tensor& sum, const at::Tensor& weight,
                                                                      const at::Tensor& rstd,
                                                                      std::array<bool, 2> output_mask,
                                                                      std::optional<at::ScalarType> narrow_dtype) {
  static const auto op = find_op<decltype(_add_rms_norm_backward)>("bittorch::_add_rms_norm_backward");
  return op.call(grad_output, grad_sum_in, sum, weight, rstd, output_mask, narrow_dtype);
}

at::Tensor add_rms_norm_weight_grad(const at::Tensor& grad_output, const at::Tensor& sum, const at::Tensor& weight,
                                    const at::Tensor& rstd) {
  const auto accumulate = rstd.scalar_type();
  const auto normalized = sum.to(accumulate) * rstd.unsqueeze(-1);
  return (grad_output.to(accumulate) * normalized).reshape({-1, sum.size(-1)}).sum(0).to(weight.scalar_type());
}

// The op without autograd (inference, and what the Autograd kernel's Function wraps): the
// forward's first two outputs.
std::tuple<at::Tensor, at::Tensor> add_rms_norm_composite(const at::Tensor& input, const at::Tensor& residual,
                                                          const at::Tensor& weight, double eps,
                                                          std::optional<at::ScalarType> output_dtype) {
  auto [output, sum, rstd] = _add_rms_norm_forward(input, residual, weight, eps, output_dtype);
  return {output, sum};
}

at::ScalarType add_rms_norm_accumulate_dtype(at::ScalarType sum_dtype) {
  return sum_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

namespace {

void check_floating_dtype(const char* op, const char* name, std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(!dtype || *dtype == at::kFloat || *dtype == at::kDouble || *dtype == at::kHalf || *dtype == at::kBFloat16,
              op, ": expected ", name, " float32, float64, float16 or bfloat16, but got ", *dtype);
}

}  // namespace

at::ScalarType check_add_rms_norm_args(const char* op, const at::Tensor& input, const at::Tensor& residual,
                                       const at::Tensor& weight, double eps,
                                       std::optional<at::ScalarType> output_dtype) {
  check_input(op, input);
  TORCH_CHECK(input.size(-1) >= 1, op, ": expected at least one feature, but got input ", input.sizes());
  TORCH_CHECK(residual.defined() && residual.sizes() == input.sizes() && residual.device() == input.device(), op,
              ": expected a residual of the input's shape ", input.sizes(), " on ", input.device(), ", but got ",
              residual.defined() ? residual.sizes() : at::IntArrayRef{});
  const auto sum_dtype = at::promote_types(input.scalar_type(), residual.scalar_type());
  TORCH_CHECK(
      sum_dtype == at::kFloat || sum_dtype == at::kDouble || sum_dtype == at::kHalf || sum_dtype == at::kBFloat16, op,
      ": expected float32, float64, float16 or bfloat16 input and residual, but got ", input.scalar_type(), " and ",
      residual.scalar_type());
  TORCH_CHECK(
      weight.defined() && weight.dim() == 1 && weight.size(0) == input.size(-1) && weight.device() == input.device(),
      op, ": expected weight [", input.size(-1), "] on ", input.device(), ", but got ",
      weight.defined() ? weight.sizes() : at::IntArrayRef{});
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == sum_dtype, op,
              ": expected a float32 weight or one of the sum's dtype ", sum_dtype, ", but got ", weight.scalar_type());
  TORCH_CHECK(std::isfinite(eps) && eps > 0, op, ": eps must be finite and > 0, not ", eps);
  check_floating_dtype(op, "output_dtype", output_dtype);
  return sum_dtype;
}

void check_add_rms_norm_backward_args(const char* op, const at::Tensor& grad_output,
                                      const std::optional<at::Tensor>& grad_sum_in, const at::Tensor& sum,
                                      const at::Tensor& weight, const at::Tensor& rstd,
                                      std::optional<at::ScalarType> narrow_dtype) {
  check_floating_dtype(op, "narrow_dtype", narrow_dtype);
  TORCH_CHECK(
      sum.defined() && sum.dim() >= 1 && weight.defined() && weight.dim() == 1 && weight.size(0) == sum.size(-1), op,
      ": expected sum [*, features] and weight [features]");
  TORCH_CHECK(
      grad_output.defined() && grad_output.sizes() == sum.sizes() && at::isFloatingType(grad_output.scalar_type()), op,
      ": expected a floating grad_output of the sum's shape");
  TORCH_CHECK(!grad_sum_in.has_value() || !grad_sum_in->defined() ||
                  (grad_sum_in->sizes() == sum.sizes() && grad_sum_in->scalar_type() == sum.scalar_type()),
              op, ": expected grad_sum_in of the sum's shape and dtype");
  TORCH_CHECK(rstd.defined() && rstd.sizes() == sum.sizes().slice(0, sum.dim() - 1) &&
                  rstd.scalar_type() == add_rms_norm_accumulate_dtype(sum.scalar_type()),
              op, ": expected rstd of the sum's rows, in its arithmetic's dtype");
}

}  // namespace bittorch::ops

TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("add_rms_norm", &bittorch::ops::add_rms_norm_composite);
}
