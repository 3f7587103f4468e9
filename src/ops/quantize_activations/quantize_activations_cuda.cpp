#include "ops/quantize_activations/quantize_activations.h"
#include "ops/quantize_activations/quantize_activations_kernels.cuh"

#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_activations_cuda(const at::Tensor& input, c10::string_view format) {
  return quantize_activation_rows(input, check_activation_args("bittorch::quantize_activations", input, format));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("quantize_activations", &quantize_activations_cuda);
}

}  // namespace bittorch::ops::cuda
