#pragma once

// Mixed-precision training on the GPU: LibTorch's CUDA autocast for a stretch of code.

#include <bittorch/train/export.h>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace bittorch::train {

/// Turns CUDA autocast on in `dtype` (bfloat16 by default) while it lives, when `device` is a
/// CUDA device and `enabled` is true (else it does nothing), and clears autocast's cache of
/// cast weights when the outermost scope ends. TernaryLinear then computes in that dtype from
/// its float32 master weight, as torch::nn::Linear does.
class BITTORCH_TRAIN_API AutocastScope {
 public:
  AutocastScope(c10::Device device, bool enabled, c10::ScalarType dtype = c10::kBFloat16);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::kBFloat16;
};

}  // namespace bittorch::train
