#include <bittorch/quant/activations.h>

#include <bittorch/ops.h>

#include <c10/util/Exception.h>

#ifdef BITTORCH_CUDA_KERNELS
#include "ops/cuda/eight_bit_product.h"
#endif

namespace bittorch::quant {

std::string to_string(ActivationFormat format) {
  switch (format) {
    case ActivationFormat::None:
      return "none";
    case ActivationFormat::Int8:
      return "int8";
    case ActivationFormat::Float8E4M3:
      return "float8_e4m3";
  }
  TORCH_CHECK(false, "bittorch: unknown ActivationFormat value ", static_cast<int>(format));
}

ActivationFormat activation_format_from_string(std::string_view name) {
  if (name == "none") return ActivationFormat::None;
  if (name == "int8") return ActivationFormat::Int8;
  if (name == "float8_e4m3") return ActivationFormat::Float8E4M3;
  TORCH_CHECK(false, "bittorch: expected activation_format \"none\", \"int8\" or \"float8_e4m3\", "
              "but got \"", name, "\"");
}

ActivationFormat activation_format_for(int64_t activation_bits, const c10::Device& device) {
  TORCH_CHECK(activation_bits == 0 || activation_bits == 8,
              "bittorch: expected activation_bits 0 (activations unquantized) or 8, but got ",
              activation_bits);
  if (activation_bits == 0) return ActivationFormat::None;
#ifdef BITTORCH_CUDA_KERNELS
  if (device.is_cuda() && ops::cuda::has_fp8_tensor_cores(device.has_index() ? device.index() : -1)) {
    return ActivationFormat::Float8E4M3;
  }
#endif
  return ActivationFormat::Int8;
}

QuantizedActivations quantize_activations(const at::Tensor& input, ActivationFormat format) {
  auto [values, scale] = ops::quantize_activations(input, to_string(format));
  return {std::move(values), std::move(scale)};
}

}  // namespace bittorch::quant
