// (grad @ weight_t^T) * 2 * sqrt(activation) with the activation's gradient in the epilogue, which
// reads the squared ReLU's output as its source tensor (sm90_epilogue_gemm.cuh).

#include "ops/squared_relu_mlp/cuda/sm90_epilogue_gemm.cuh"

namespace bittorch::ops::cuda {
namespace sm90 {
namespace {

// acc * 2 * sqrt(y) for y = max(x, 0)^2: the gradient through the squared ReLU.
template <class T>
struct TimesSquaredReluGrad {
  CUTLASS_HOST_DEVICE T operator()(const T& acc, const T& activation) const {
    return acc * T(2) * cutlass::fast_sqrt(activation);
  }
};

template <class T, int N>
struct TimesSquaredReluGrad<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(const cutlass::Array<T, N>& acc,
                                                      const cutlass::Array<T, N>& activation) const {
    cutlass::Array<T, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = TimesSquaredReluGrad<T>()(acc[i], activation[i]);
    return y;
  }
};

using Epilogue = cutlass::epilogue::fusion::Sm90EVT<
    cutlass::epilogue::fusion::Sm90Compute<TimesSquaredReluGrad, Element, Accumulator, kRound>,
    cutlass::epilogue::fusion::Sm90AccFetch, cutlass::epilogue::fusion::Sm90SrcFetch<Element>>;
using Gemm = EpilogueGemm<Element, Epilogue>::Gemm;

}  // namespace
}  // namespace sm90

void sm90_gemm_times_squared_relu_grad(const at::Tensor& grad, const at::Tensor& weight_t, const at::Tensor& activation,
                                       at::Tensor& output) {
  using Gemm = sm90::Gemm;
  const int m = static_cast<int>(grad.size(0)), k = static_cast<int>(grad.size(1));
  const int n = static_cast<int>(weight_t.size(0));
  typename Gemm::Arguments arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {m, n, k, 1},
      {static_cast<const sm90::Element*>(grad.data_ptr()), sm90::packed_stride<typename Gemm::GemmKernel::StrideA>(k),
       static_cast<const sm90::Element*>(weight_t.data_ptr()),
       sm90::packed_stride<typename Gemm::GemmKernel::StrideB>(k)},
      {{},
       static_cast<const sm90::Element*>(activation.data_ptr()),
       sm90::packed_stride<typename Gemm::GemmKernel::StrideC>(n),
       static_cast<sm90::Element*>(output.data_ptr()),
       sm90::packed_stride<typename Gemm::GemmKernel::StrideD>(n)},
      sm90::hardware_info(grad)};
  sm90::run<Gemm>("bittorch::squared_relu_mlp", arguments, grad);
}

}  // namespace bittorch::ops::cuda
