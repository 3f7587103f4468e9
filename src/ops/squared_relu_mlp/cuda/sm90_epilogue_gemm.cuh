#pragma once

// A GEMM with a fused epilogue as a CUTLASS 3 kernel for Hopper (wgmma fed by TMA,
// warp-specialized ping-pong: one consumer warpgroup's epilogue overlaps the other's main
// loop, which matters at the MLP's short K of 768-1,536), for squared_relu_mlp's up
// projection. bfloat16 operands, float32 accumulation, bfloat16 output. Kept apart from the
// epilogue's .cu file so that each further instantiation compiles in a file of its own.

#include "ops/squared_relu_mlp/cuda/sm90_epilogue_gemm.h"

#include "ops/common/cuda/sm90_gemm.cuh"

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

}  // namespace bittorch::ops::cuda::sm90
