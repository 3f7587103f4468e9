#include <bittorch/quant/checks.h>

#include "ops/common/checks.h"
#include "ops/reference/reference.h"
#include "ops/ternarize/ternarize.h"

#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_cpu(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                                 c10::string_view scale_mode) {
  const auto mode = check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  quant::check_finite("bittorch::ternarize", "weight", weight);
  return ternarize_reference(weight, threshold_factor, per_channel, mode);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("ternarize", &ternarize_cpu);
}

}  // namespace bittorch::ops
