#include <bittorch/ops/quantize_activations.h>

#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// Quantization has no useful gradient: the outputs never require grad.
std::tuple<at::Tensor, at::Tensor> quantize_activations_autograd(const at::Tensor& input, c10::string_view format) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return quantize_activations(input, format);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("quantize_activations", &quantize_activations_autograd);
}

}  // namespace bittorch::ops
