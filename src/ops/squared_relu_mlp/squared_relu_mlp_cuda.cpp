// bittorch::squared_relu_mlp's forward on CUDA: on Hopper with bfloat16 operands of widths that
// are multiples of 8, the up projection with the squared ReLU in its epilogue (CUTLASS,
// cuda/sm90_gemm_squared_relu.cu); elsewhere, and for the down projection, the composed path.
// The backward is one composition for every device (squared_relu_mlp.cpp).

#include "ops/squared_relu_mlp/squared_relu_mlp.h"

#include "ops/common/checks.h"

#include "ops/common/cuda/device.h"
#include "ops/squared_relu_mlp/cuda/sm90_epilogue_gemm.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace bittorch::ops::cuda {

namespace {

constexpr const char* kOp = "bittorch::squared_relu_mlp";

#ifdef BITTORCH_WITH_CUTLASS
// Whether the SM90 product takes input_rows [M, K] and weight [N, K] on this device: compute
// capability 9.0, bfloat16, contiguous operands with rows, whose rows are whole 16-byte groups
// (TMA's granule) and whose data starts on a 16-byte boundary; output rows (N, written into a
// fresh allocation) of whole 16-byte groups too, and at least a wave of 128 x 128 output tiles
// (below that, decoding's few rows, cuBLAS's kernels spread the weight's reads over more SMs).
bool sm90_squared_relu_takes(const at::Tensor& input_rows, const at::Tensor& weight) {
  if (!input_rows.is_cuda() || !runs_sm90a(input_rows.device())) return false;
  for (const auto& t : {input_rows, weight}) {
    if (t.scalar_type() != at::kBFloat16 || t.dim() != 2 || !t.is_contiguous() || t.size(0) == 0 ||
        t.size(1) % 8 != 0 || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0 || t.size(0) > INT32_MAX ||
        t.size(1) > INT32_MAX) {
      return false;
    }
  }
  const auto tiles = [](int64_t size) { return (size + 127) / 128; };
  return weight.size(0) % 8 == 0 && tiles(input_rows.size(0)) * tiles(weight.size(0)) >=
                                        at::cuda::getDeviceProperties(input_rows.get_device())->multiProcessorCount;
}
#endif

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& input, const at::Tensor& up_weight,
                                                const at::Tensor& down_weight) {
  check_squared_relu_mlp_args(kOp, input, up_weight, down_weight);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor input_rows = input.reshape({-1, input.size(-1)}).contiguous();
  const int64_t hidden_features = up_weight.size(0);
  at::Tensor hidden_rows;
#ifdef BITTORCH_WITH_CUTLASS
  const at::Tensor weight = up_weight.contiguous();
  if (sm90_squared_relu_takes(input_rows, weight)) {
    hidden_rows = at::empty({input_rows.size(0), hidden_features}, input.options());
    sm90_gemm_squared_relu(input_rows, weight, hidden_rows);
  }
#endif
  if (!hidden_rows.defined()) hidden_rows = squared_relu_mlp_hidden_composed(input_rows, up_weight);
  const at::Tensor hidden = hidden_rows.view(linear_output_shape(input, hidden_features));
  return {squared_relu_mlp_output(input, hidden, down_weight), hidden};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("_squared_relu_mlp_forward", &forward_cuda);
}

}  // namespace bittorch::ops::cuda
