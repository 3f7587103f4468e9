#pragma once

// bittorch::quantize_activations: per-row 8-bit quantization of an input (schema in
// src/ops/quantize_activations/quantize_activations.cpp).

#include <bittorch/export.h>
#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <tuple>

namespace bittorch::ops {

/// (values, scale) of an input [*, features] (float32, float16 or bfloat16): values int8 or
/// float8_e4m3fn in the input's shape (format "int8" | "float8_e4m3"), scale float32 with
/// the last dimension 1. Not differentiable.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> quantize_activations(const at::Tensor& input, c10::string_view format);

/// The format `activation_bits` (0 = off, or 8) means on `device`: FP8 e4m3 on CUDA devices of
/// compute capability 8.9 and later, INT8 on older GPUs and on the CPU; None for 0.
BITTORCH_API quant::ActivationFormat activation_format_for(int64_t activation_bits, const c10::Device& device);

}  // namespace bittorch::ops
