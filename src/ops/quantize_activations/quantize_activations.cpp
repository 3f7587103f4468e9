// bittorch::quantize_activations: schema, typed entry and argument checks.

#include "ops/quantize_activations/quantize_activations.h"

#include <bittorch/ops/quantize_activations.h>
#include <bittorch/quant/config.h>

#include "ops/common/checks.h"
#ifdef BITTORCH_CUDA_KERNELS
#include "ops/common/cuda/device.h"
#endif

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // Per-row 8-bit codes of an input ("int8" or "float8_e4m3") and their float32 scales
  // (input's shape with the last dimension 1). Not differentiable.
  m.def("quantize_activations(Tensor input, str format) -> (Tensor values, Tensor scale)");
}

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& input, c10::string_view format) {
  static const auto op = find_op<decltype(quantize_activations)>("bittorch::quantize_activations");
  return op.call(input, format);
}

quant::ActivationFormat activation_format_for(int64_t activation_bits, const c10::Device& device) {
  quant::check_quant_config(quant::QuantConfig().activation_bits(activation_bits), "bittorch");
  if (activation_bits == 0) return quant::ActivationFormat::None;
#ifdef BITTORCH_CUDA_KERNELS
  if (device.is_cuda() && cuda::has_fp8_tensor_cores(device.has_index() ? device.index() : -1)) {
    return quant::ActivationFormat::Float8E4M3;
  }
#endif
  return quant::ActivationFormat::Int8;
}

quant::ActivationFormat check_activation_args(const char* op, const at::Tensor& input, c10::string_view format) {
  check_input(op, input);
  const auto parsed = parse_activation_format(format);
  TORCH_CHECK(parsed != quant::ActivationFormat::None, op,
              ": expected format \"int8\" or \"float8_e4m3\", but got \"none\"");
  TORCH_CHECK(input.size(-1) >= 1, op, ": expected an input with at least one feature (last dimension), but got shape ",
              input.sizes());
  check_quantizable_input(op, input);
  return parsed;
}

std::vector<int64_t> row_scale_shape(const at::Tensor& input) {
  auto shape = input.sizes().vec();
  shape.back() = 1;
  return shape;
}

std::tuple<at::Tensor, at::Tensor> empty_quantized_rows(const at::Tensor& input, quant::ActivationFormat format) {
  return {at::empty(input.sizes(), input.options().dtype(eight_bit_dtype(format))),
          at::empty(row_scale_shape(input), input.options().dtype(at::kFloat))};
}

}  // namespace bittorch::ops
