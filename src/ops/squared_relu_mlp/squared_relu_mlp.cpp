// bittorch::squared_relu_mlp: schema, typed entries, argument checks, the composed forward's
// pieces and the backward.

#include "ops/squared_relu_mlp/squared_relu_mlp.h"

#include <bittorch/ops/squared_relu.h>
#include <bittorch/ops/squared_relu_mlp.h>

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // down(max(up(x), 0)^2): two bias-free linear layers and the squared ReLU between them.
  m.def("squared_relu_mlp(Tensor input, Tensor up_weight, Tensor down_weight) -> Tensor");
  m.def(
      "_squared_relu_mlp_forward(Tensor input, Tensor up_weight, Tensor down_weight) -> (Tensor output, Tensor "
      "hidden)");
  m.def(
      "_squared_relu_mlp_backward(Tensor grad_output, Tensor input, Tensor hidden, Tensor up_weight, Tensor "
      "down_weight, bool[3] output_mask) -> (Tensor grad_input, Tensor grad_up_weight, Tensor grad_down_weight)");
}

namespace bittorch::ops {

at::Tensor squared_relu_mlp(const at::Tensor& input, const at::Tensor& up_weight, const at::Tensor& down_weight) {
  static const auto op = find_op<decltype(squared_relu_mlp)>("bittorch::squared_relu_mlp");
  return op.call(input, up_weight, down_weight);
}

std::tuple<at::Tensor, at::Tensor> _squared_relu_mlp_forward(const at::Tensor& input, const at::Tensor& up_weight,
                                                             const at::Tensor& down_weight) {
  static const auto op = find_op<decltype(_squared_relu_mlp_forward)>("bittorch::_squared_relu_mlp_forward");
  return op.call(input, up_weight, down_weight);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> _squared_relu_mlp_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& up_weight,
    const at::Tensor& down_weight, std::array<bool, 3> output_mask) {
  static const auto op = find_op<decltype(_squared_relu_mlp_backward)>("bittorch::_squared_relu_mlp_backward");
  return op.call(grad_output, input, hidden, up_weight, down_weight, output_mask);
}

void check_squared_relu_mlp_args(const char* op, const at::Tensor& input, const at::Tensor& up_weight,
                                 const at::Tensor& down_weight) {
  check_input(op, input);
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": expected a float32, float64, float16 or bfloat16 input, but got ", dtype);
  TORCH_CHECK(up_weight.defined() && up_weight.dim() == 2 && up_weight.size(1) == input.size(-1), op,
              ": expected up_weight [hidden, ", input.size(-1), "], but got ",
              up_weight.defined() ? up_weight.sizes() : at::IntArrayRef{});
  TORCH_CHECK(down_weight.defined() && down_weight.dim() == 2 && down_weight.size(1) == up_weight.size(0), op,
              ": expected down_weight [out, ", up_weight.size(0), "], but got ",
              down_weight.defined() ? down_weight.sizes() : at::IntArrayRef{});
  for (const auto* weight : {&up_weight, &down_weight}) {
    TORCH_CHECK(weight->scalar_type() == dtype && weight->device() == input.device(), op,
                ": expected weights of the input's dtype ", dtype, " on its device ", input.device(), ", but got ",
                weight->scalar_type(), " on ", weight->device());
  }
}

void check_squared_relu_mlp_backward_args(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                                          const at::Tensor& hidden, const at::Tensor& up_weight,
                                          const at::Tensor& down_weight) {
  check_squared_relu_mlp_args(op, input, up_weight, down_weight);
  const auto expect = [&](const char* name, const at::Tensor& t, int64_t features) {
    TORCH_CHECK(t.defined() && t.sizes() == at::IntArrayRef(linear_output_shape(input, features)) &&
                    t.scalar_type() == input.scalar_type() && t.device() == input.device(),
                op, ": expected ", name, " of shape ", linear_output_shape(input, features), ", dtype ",
                input.scalar_type(), " and device ", input.device());
  };
  expect("hidden", hidden, up_weight.size(0));
  expect("grad_output", grad_output, down_weight.size(0));
}

at::Tensor squared_relu_mlp_output(const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& down_weight) {
  const at::Tensor hidden_rows = hidden.reshape({-1, hidden.size(-1)});
  return at::mm(hidden_rows, down_weight.t()).view(linear_output_shape(input, down_weight.size(0)));
}

at::Tensor squared_relu_mlp_hidden_composed(const at::Tensor& input_rows, const at::Tensor& up_weight) {
  return squared_relu(at::mm(input_rows, up_weight.t()));
}

namespace {

// The backward on every device: ATen's products and squared_relu's backward kernel. (A Hopper
// kernel that multiplied the input gradient by 2 sqrt(hidden) in its epilogue lost to this on an
// H100: 367 us a call on medium with the weight MN-major, and 3% of the step K-major.)
std::tuple<at::Tensor, at::Tensor, at::Tensor> squared_relu_mlp_backward_composed(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& up_weight,
    const at::Tensor& down_weight, std::array<bool, 3> output_mask) {
  check_squared_relu_mlp_backward_args("bittorch::squared_relu_mlp", grad_output, input, hidden, up_weight,
                                       down_weight);
  const at::Tensor grad_rows = grad_output.reshape({-1, grad_output.size(-1)});
  const at::Tensor hidden_rows = hidden.reshape({-1, hidden.size(-1)});
  const at::Tensor grad_hidden = output_mask[0] || output_mask[1]
                                     ? _squared_relu_backward(at::mm(grad_rows, down_weight), hidden_rows)
                                     : at::Tensor();
  at::Tensor grad_input, grad_up_weight, grad_down_weight;
  if (output_mask[0]) grad_input = at::mm(grad_hidden, up_weight).view(input.sizes());
  if (output_mask[1]) grad_up_weight = at::mm(grad_hidden.t(), input.reshape({-1, input.size(-1)}));
  if (output_mask[2]) grad_down_weight = at::mm(grad_rows.t(), hidden_rows);
  return {std::move(grad_input), std::move(grad_up_weight), std::move(grad_down_weight)};
}

at::Tensor squared_relu_mlp_composite(const at::Tensor& input, const at::Tensor& up_weight,
                                      const at::Tensor& down_weight) {
  return std::get<0>(_squared_relu_mlp_forward(input, up_weight, down_weight));
}

}  // namespace
}  // namespace bittorch::ops

// Below autograd (inference mode, or tensors without the Autograd key) the op is its forward;
// the backward is one composition on every device (Meta included).
TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("squared_relu_mlp", &bittorch::ops::squared_relu_mlp_composite);
  m.impl("_squared_relu_mlp_backward", &bittorch::ops::squared_relu_mlp_backward_composed);
}
