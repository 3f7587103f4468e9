#include "ops/quantize_activations/quantize_activations.h"
#include "ops/reference/reference.h"

#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_activations_cpu(const at::Tensor& input, c10::string_view format) {
  return quantize_activations_reference(input, check_activation_args("bittorch::quantize_activations", input, format));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("quantize_activations", &quantize_activations_cpu);
}

}  // namespace bittorch::ops
