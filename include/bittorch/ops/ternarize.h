#pragma once

// bittorch::ternarize: the ternary quantizer of a weight matrix (schema in
// src/ops/ternarize/ternarize.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace bittorch::ops {

/// (codes, scale) of a 2-D weight [out, in]: codes in {-1, 0, 1} in the weight's dtype, scale
/// per output row ([out]) or global ([1]), float32 for float16/bfloat16 weights, else the
/// weight's dtype. scale_mode "max" | "absmean" (quant::ScaleMode). A non-finite weight is a
/// c10::Error naming the first bad element. Not differentiable.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor,
                                                          bool per_channel, c10::string_view scale_mode);

}  // namespace bittorch::ops
