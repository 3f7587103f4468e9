#include "ops/common/checks.h"
#include "ops/quantize_activations/quantize_activations.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_activations_meta(const at::Tensor& input, c10::string_view format) {
  const auto parsed = check_activation_args("bittorch::quantize_activations", input, format);
  auto scale_shape = input.sizes().vec();
  scale_shape.back() = 1;
  const auto values_dtype = eight_bit_dtype(parsed);
  return {at::empty(input.sizes(), input.options().dtype(values_dtype)),
          at::empty(scale_shape, input.options().dtype(at::kFloat))};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("quantize_activations", &quantize_activations_meta);
}

}  // namespace bittorch::ops
