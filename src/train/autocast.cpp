#include <bittorch/train/autocast.h>

#include <ATen/autocast_mode.h>

namespace bittorch::train {

AutocastScope::AutocastScope(c10::Device device, bool enabled, c10::ScalarType dtype)
    : active_(enabled && device.is_cuda()) {
  if (!active_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
}

}  // namespace bittorch::train
