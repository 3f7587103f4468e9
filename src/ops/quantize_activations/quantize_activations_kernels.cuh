#pragma once

// Per-row 8-bit quantization of activations on the GPU, bit-identical to the CPU reference
// (quantize_activations_reference in ops/reference): one pass per row (row_quantize.cuh).

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <tuple>

namespace bittorch::ops::cuda {

/// (values, scale) of a checked input [*, features]: values int8 or float8_e4m3fn in the
/// input's shape, scale float32 with the last dimension 1.
std::tuple<at::Tensor, at::Tensor> quantize_activation_rows(const at::Tensor& input, quant::ActivationFormat format);

}  // namespace bittorch::ops::cuda
