// bittorch::squared_relu on CUDA: ATen's elementwise loop (TensorIterator and gpu_kernel:
// vectorized loads, any layout, any size) over one functor each way, in float32 arithmetic.

#include "ops/squared_relu/squared_relu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorIterator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <ATen/native/cuda/Loops.cuh>

namespace bittorch::ops::cuda {
namespace {

constexpr const char* kOp = "bittorch::squared_relu";

template <typename scalar_t>
struct SquaredRelu {
  __device__ scalar_t operator()(scalar_t x) const {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t positive = static_cast<acc_t>(x) > acc_t(0) ? static_cast<acc_t>(x) : acc_t(0);
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

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("squared_relu", &forward_cuda);
  m.impl("_squared_relu_backward", &backward_cuda);
}

}  // namespace bittorch::ops::cuda
