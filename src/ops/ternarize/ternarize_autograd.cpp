#include <bittorch/ops/ternarize.h>

#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// Quantization has no useful gradient: the outputs never require grad.
std::tuple<at::Tensor, at::Tensor> ternarize_autograd(const at::Tensor& weight, double threshold_factor,
                                                      bool per_channel, c10::string_view scale_mode) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return ternarize(weight, threshold_factor, per_channel, scale_mode);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("ternarize", &ternarize_autograd);
}

}  // namespace bittorch::ops
