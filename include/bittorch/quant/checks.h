#pragma once

// Checks of the numbers a quantizer or a packed file may hold.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

namespace bittorch::quant {

/// A c10::Error from `who` naming `name` when `tensor` holds NaN or +-Inf: how many, and the
/// first one's index and value. Reads the tensor (a device synchronisation on a GPU): for
/// quantization and files, not for the training path.
BITTORCH_API void check_finite(const char* who, const char* name, const at::Tensor& tensor);

}  // namespace bittorch::quant
