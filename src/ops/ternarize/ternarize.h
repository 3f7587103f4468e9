#pragma once

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace bittorch::ops {

/// A 2-D, non-empty, floating-point weight and valid quantization settings
/// (quant::check_quant_config); returns the parsed scale mode.
quant::ScaleMode check_ternarize_args(const char* op, const at::Tensor& weight, double threshold_factor,
                                      c10::string_view scale_mode);

/// An uninitialized scale of the shape and dtype the quantizer gives `weight` ([out] or [1]):
/// what the Meta kernels return for it.
at::Tensor empty_scale(const at::Tensor& weight, bool per_channel);

}  // namespace bittorch::ops
