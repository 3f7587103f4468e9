// bittorch::squared_relu on the CPU, from its formulas, element by element over threads.

#include "ops/reference/reference.h"
#include "ops/squared_relu/squared_relu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::squared_relu";
constexpr int64_t kGrain = 32768;

at::Tensor forward_cpu(const at::Tensor& input) {
  check_squared_relu_input(kOp, input);
  const auto x = input.contiguous();
  auto y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "squared_relu_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto* in = x.const_data_ptr<scalar_t>();
    auto* out = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t positive = std::max(static_cast<acc_t>(in[i]), acc_t(0));
        out[i] = static_cast<scalar_t>(positive * positive);
      }
    });
  });
  return y;
}

at::Tensor backward_cpu(const at::Tensor& grad_output, const at::Tensor& output) {
  check_squared_relu_backward_args(kOp, grad_output, output);
  const auto y = output.contiguous(), g = grad_output.contiguous();
  auto grad_input = at::empty_like(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "squared_relu_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto* squares = y.const_data_ptr<scalar_t>();
    const auto* grad = g.const_data_ptr<scalar_t>();
    auto* out = grad_input.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, y.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t positive = std::sqrt(static_cast<acc_t>(squares[i]));  // max(x, 0)
        out[i] = static_cast<scalar_t>(static_cast<acc_t>(grad[i]) * acc_t(2) * positive);
      }
    });
  });
  return grad_input;
}

// The two ops' formulas one after the other.
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantized_cpu(const at::Tensor& input, c10::string_view format) {
  const auto parsed = check_squared_relu_quantized_args("bittorch::squared_relu_quantized", input, format);
  auto output = forward_cpu(input);
  auto [values, scale] = quantize_activations_reference(output, parsed);
  return {std::move(output), std::move(values), std::move(scale)};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("squared_relu", &forward_cpu);
  m.impl("_squared_relu_backward", &backward_cpu);
  m.impl("squared_relu_quantized", &quantized_cpu);
}

}  // namespace bittorch::ops
