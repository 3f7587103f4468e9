#include "ops/common/checks.h"
#include "ops/ternarize/ternarize.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_meta(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                                  c10::string_view scale_mode) {
  check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  return {at::empty_like(weight), empty_scale(weight, per_channel)};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("ternarize", &ternarize_meta);
}

}  // namespace bittorch::ops
