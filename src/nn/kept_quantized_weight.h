#pragma once

// The weights TernaryLinear layers keep quantized inside a KeepQuantizedWeights scope
// (include/bittorch/nn/modules/ternary_linear.h).

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>

namespace bittorch::nn::detail {

struct KeptQuantizedWeight {
  // What it was made from: the weight as it was then, and the call's dtype and format.
  int64_t weight_version = 0;
  const void* weight_data = nullptr;
  c10::Device device = c10::kCPU;
  at::ScalarType dtype = at::kFloat;
  quant::ActivationFormat format = quant::ActivationFormat::None;
  // ops::ternary_linear_quantize_weight's outputs.
  at::Tensor operand, codes, scale;
};

/// Drops `kept`'s tensors when the outermost KeepQuantizedWeights scope of this thread ends.
void drop_when_scope_ends(const std::shared_ptr<KeptQuantizedWeight>& kept);

}  // namespace bittorch::nn::detail
