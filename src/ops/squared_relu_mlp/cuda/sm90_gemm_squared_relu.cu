// max(input @ weight^T, 0)^2 with the activation in the epilogue (sm90_epilogue_gemm.cuh).

#include "ops/squared_relu_mlp/cuda/sm90_epilogue_gemm.cuh"

namespace bittorch::ops::cuda {
namespace sm90 {
namespace {

using Epilogue = cutlass::epilogue::fusion::Sm90EVT<
    cutlass::epilogue::fusion::Sm90Compute<SquaredRelu, Element, Accumulator, kRound>,
    cutlass::epilogue::fusion::Sm90AccFetch>;
using Gemm = EpilogueGemm<Epilogue>::Gemm;

}  // namespace
}  // namespace sm90

void sm90_gemm_squared_relu(const at::Tensor& input, const at::Tensor& weight, at::Tensor& output) {
  using Gemm = sm90::Gemm;
  const int m = static_cast<int>(input.size(0)), k = static_cast<int>(input.size(1));
  const int n = static_cast<int>(weight.size(0));
  typename Gemm::Arguments arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {m, n, k, 1},
      {static_cast<const sm90::Element*>(input.data_ptr()), sm90::packed_stride<typename Gemm::GemmKernel::StrideA>(k),
       static_cast<const sm90::Element*>(weight.data_ptr()),
       sm90::packed_stride<typename Gemm::GemmKernel::StrideB>(k)},
      {{},
       nullptr,
       sm90::packed_stride<typename Gemm::GemmKernel::StrideC>(n),
       static_cast<sm90::Element*>(output.data_ptr()),
       sm90::packed_stride<typename Gemm::GemmKernel::StrideD>(n)},
      sm90::hardware_info(input)};
  sm90::run<Gemm>("bittorch::squared_relu_mlp", arguments, input);
}

}  // namespace bittorch::ops::cuda
