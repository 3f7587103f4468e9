// bittorch::squared_relu on CUDA: ATen's elementwise loop (TensorIterator and gpu_kernel:
// vectorized loads, any layout, any size) over one functor each way, in float32 arithmetic.
// squared_relu_quantized: the activation quantizer's row kernel (row_quantize.cuh) applying
// the same functor to each pack as it reads the input, writing the output and its 8-bit rows.

#include "ops/quantize_activations/activation_quantizer.cuh"
#include "ops/quantize_activations/quantize_activations.h"
#include "ops/squared_relu/squared_relu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorIterator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <ATen/native/cuda/Loops.cuh>

#include <cstdint>
#include <tuple>

namespace bittorch::ops::cuda {
namespace {

constexpr const char* kOp = "bittorch::squared_relu";

// NaN stays NaN (as the CPU's std::max(x, 0) and torch.relu keep it), not 0.
template <typename scalar_t>
struct SquaredRelu {
  __device__ scalar_t operator()(scalar_t x) const {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t value = static_cast<acc_t>(x);
    const acc_t positive = value < acc_t(0) ? acc_t(0) : value;
    return static_cast<scalar_t>(positive * positive);
  }
};

// From the forward's output y = max(x, 0)^2: max(x, 0) = sqrt(y).
template <typename scalar_t>
struct SquaredReluBackward {
  __device__ scalar_t operator()(scalar_t grad, scalar_t y) const {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t positive = ::sqrt(static_cast<acc_t>(y));
    return static_cast<scalar_t>(static_cast<acc_t>(grad) * acc_t(2) * positive);
  }
};

// The activation quantizer over the rows of squared_relu(input), which it writes too.
template <typename in_t>
struct SquaredReluQuantizer {
  using scale_t = float;
  static constexpr bool max_statistic = true;
  static constexpr bool prepares_input = true;
  ActivationQuantizer<in_t> quantize;
  in_t* output;

  template <int N>
  __device__ Pack<in_t, N> prepare(const Pack<in_t, N>& x) const {
    Pack<in_t, N> y;
#pragma unroll
    for (int i = 0; i < N; ++i) y.v[i] = SquaredRelu<in_t>()(x.v[i]);
    return y;
  }

  __device__ float finish_row(int64_t row, double total, int64_t cols) const {
    return quantize.finish_row(row, total, cols);
  }

  template <int N>
  __device__ void write(int64_t index, const Pack<in_t, N>& y, float s) const {
    *reinterpret_cast<Pack<in_t, N>*>(output + index) = y;
    quantize.write(index, y, s);
  }
};

static_assert(PreparesInput<SquaredReluQuantizer<float>>::value, "the quantizer must see the activation's output");

at::Tensor forward_cuda(const at::Tensor& input) {
  check_squared_relu_input(kOp, input);
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto output = at::empty_like(input, at::MemoryFormat::Contiguous);
  auto iter = at::TensorIteratorConfig().add_output(output).add_const_input(input).build();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "squared_relu_cuda",
                                  [&] { at::native::gpu_kernel(iter, SquaredRelu<scalar_t>()); });
  return output;
}

at::Tensor backward_cuda(const at::Tensor& grad_output, const at::Tensor& output) {
  check_squared_relu_backward_args(kOp, grad_output, output);
  const c10::cuda::CUDAGuard device_guard(output.device());
  auto grad_input = at::empty_like(output, at::MemoryFormat::Contiguous);
  auto iter =
      at::TensorIteratorConfig().add_output(grad_input).add_const_input(grad_output).add_const_input(output).build();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "squared_relu_backward_cuda",
                                  [&] { at::native::gpu_kernel(iter, SquaredReluBackward<scalar_t>()); });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantized_cuda(const at::Tensor& input_in, c10::string_view format) {
  const auto parsed = check_squared_relu_quantized_args("bittorch::squared_relu_quantized", input_in, format);
  const c10::cuda::CUDAGuard device_guard(input_in.device());
  const at::Tensor input = input_in.contiguous();
  auto output = at::empty_like(input);
  auto [values, scale] = empty_quantized_rows(input, parsed);
  const int64_t cols = input.size(-1);
  const int64_t rows = input.numel() / cols;  // cols >= 1 (checked)
  const auto quantize = [&, &values = values, &scale = scale](auto zero) {
    using in_t = decltype(zero);
    quantize_rows(
        input.data_ptr<in_t>(), rows, cols,
        SquaredReluQuantizer<in_t>{activation_quantizer<in_t>(parsed, values, scale), output.data_ptr<in_t>()});
  };
  AT_DISPATCH_SWITCH(input.scalar_type(), "bittorch_squared_relu_quantized_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { quantize(scalar_t{}); })
                         AT_DISPATCH_CASE(at::kHalf, [&] { quantize(scalar_t{}); })
                             AT_DISPATCH_CASE(at::kBFloat16, [&] { quantize(scalar_t{}); }));
  return {output, values, scale};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("squared_relu", &forward_cuda);
  m.impl("_squared_relu_backward", &backward_cuda);
  m.impl("squared_relu_quantized", &quantized_cuda);
}

}  // namespace bittorch::ops::cuda
