#pragma once

#include <ATen/autocast_mode.h>

namespace bittorch::nn::detail {

/// Autocast's cache of cast weights off while it lives, for work whose casts must not be kept:
/// a captured graph must not read casts that the cache frees when its scope ends, and a
/// recomputation in the backward must not leave casts of weights the optimizer is about to
/// change for the next forward to find.
class AutocastCacheOff {
 public:
  AutocastCacheOff() : was_enabled_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(was_enabled_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  bool was_enabled_;
};

}  // namespace bittorch::nn::detail
