#pragma once

// What the CUTLASS 3 GEMMs for Hopper share (squared_relu_mlp's epilogue GEMM,
// packed_ternary_linear's wgmma variant): strides from a leading dimension, the launch with its
// workspace and checks, the device's SM count, and the squared ReLU as an epilogue functor.
// Included only by the .cu files built where CUTLASS's headers were found.

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cute/tensor.hpp>

namespace bittorch::ops::cuda::sm90 {

// A packed stride for one batch: the leading dimension in whichever of the first two modes is
// not the contiguous one (mode 0 for row-major A, C and D and a [N, K] weight).
template <class Stride>
Stride packed_stride(int64_t leading_dimension) {
  Stride stride{};
  if constexpr (cute::is_static<cute::remove_cvref_t<decltype(cute::get<0>(stride))>>::value) {
    cute::get<1>(stride) = leading_dimension;
  } else {
    cute::get<0>(stride) = leading_dimension;
  }
  return stride;
}

template <class Gemm>
void run(const char* op, typename Gemm::Arguments& arguments, const at::Tensor& like) {
  Gemm gemm;
  TORCH_CHECK(gemm.can_implement(arguments) == cutlass::Status::kSuccess, op,
              ": the SM90 product cannot take these operands");
  const size_t workspace_bytes = Gemm::get_workspace_size(arguments);
  const at::Tensor workspace = workspace_bytes
                                   ? at::empty({static_cast<int64_t>(workspace_bytes)}, like.options().dtype(at::kByte))
                                   : at::Tensor();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  TORCH_CHECK(
      gemm.initialize(arguments, workspace_bytes ? workspace.data_ptr() : nullptr, stream) == cutlass::Status::kSuccess,
      op, ": initializing the SM90 product failed");
  TORCH_CHECK(gemm.run(stream) == cutlass::Status::kSuccess, op, ": launching the SM90 product failed");
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

inline cutlass::KernelHardwareInfo hardware_info(const at::Tensor& like) {
  cutlass::KernelHardwareInfo info;
  info.device_id = like.get_device();
  info.sm_count = at::cuda::getDeviceProperties(like.get_device())->multiProcessorCount;
  return info;
}

// max(x, 0)^2 for an Sm90Compute epilogue node. NaN stays NaN (not `x > 0 ? x : 0`, which
// makes it 0), as in ops::squared_relu.
template <class T>
struct SquaredRelu {
  CUTLASS_HOST_DEVICE T operator()(const T& x) const {
    const T positive = x < T(0) ? T(0) : x;
    return positive * positive;
  }
};

template <class T, int N>
struct SquaredRelu<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(const cutlass::Array<T, N>& x) const {
    cutlass::Array<T, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = SquaredRelu<T>()(x[i]);
    return y;
  }
};

}  // namespace bittorch::ops::cuda::sm90
