#include <bittorch/quant/checks.h>

#include "ops/common/checks.h"
#include "ops/ternarize/ternarize.h"
#include "ops/ternarize/ternarize_kernels.cuh"

#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> ternarize_cuda(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                                  c10::string_view scale_mode) {
  const auto mode = check_ternarize_args("bittorch::ternarize", weight, threshold_factor, scale_mode);
  quant::check_finite("bittorch::ternarize", "weight", weight);
  auto q = ternarize_on_device(weight, threshold_factor, per_channel, mode, {weight.scalar_type(), std::nullopt});
  return {q.codes, q.scale};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("ternarize", &ternarize_cuda);
}

}  // namespace bittorch::ops::cuda
