#pragma once

// A GEMM with a fused epilogue as a CUTLASS 3 kernel for Hopper (wgmma fed by TMA,
// warp-specialized ping-pong: one consumer warpgroup's epilogue overlaps the other's main
// loop, which matters at the MLP's short K of 768-1,536), for squared_relu_mlp's up
// projection. bfloat16 operands, float32 accumulation, bfloat16 output. Kept apart from the
// epilogue's .cu file so that each further instantiation compiles in a file of its own.

#include "ops/squared_relu_mlp/cuda/sm90_epilogue_gemm.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>

namespace bittorch::ops::cuda::sm90 {

using Element = cutlass::bfloat16_t;
using Accumulator = float;
constexpr int kAlignment = 8;  // 16-byte rows: what TMA needs
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

// D[M, N] = epilogue(A[M, K] @ B[K, N]) with A and D row-major and B given as [N, K]
// (K-major, as a linear layer's weight is stored; an MN-major weight measured 3.4x slower).
// The epilogue reads no source tensor C (one that did, the MLP's input gradient times
// 2 sqrt(hidden), was 3x slower than this kernel on an H100 and is gone).
template <class FusionCallbacks>
struct EpilogueGemm {
  using TileShape = cute::Shape<cute::_128, cute::_128, cute::_64>;
  using ClusterShape = cute::Shape<cute::_2, cute::_1, cute::_1>;
  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, Accumulator, Accumulator, void, cutlass::layout::RowMajor,
      kAlignment, Element, cutlass::layout::RowMajor, kAlignment, cutlass::epilogue::TmaWarpSpecialized,
      FusionCallbacks>::CollectiveOp;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, cutlass::layout::RowMajor, kAlignment, Element,
      cutlass::layout::ColumnMajor, kAlignment, Accumulator, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedPingpong>::CollectiveOp;
  using Kernel =
      cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, CollectiveMainloop, CollectiveEpilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

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

}  // namespace bittorch::ops::cuda::sm90
