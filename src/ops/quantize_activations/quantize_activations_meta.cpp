#include "ops/common/checks.h"
#include "ops/quantize_activations/quantize_activations.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_activations_meta(const at::Tensor& input, c10::string_view format) {
  return empty_quantized_rows(input, check_activation_args("bittorch::quantize_activations", input, format));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("quantize_activations", &quantize_activations_meta);
}

}  // namespace bittorch::ops
