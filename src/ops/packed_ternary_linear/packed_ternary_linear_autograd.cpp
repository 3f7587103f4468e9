#include <bittorch/ops/packed_ternary_linear.h>

#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// Inference only: the output never requires grad.
at::Tensor packed_ternary_linear_autograd(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& scale,
                                          const std::optional<at::Tensor>& bias, int64_t in_features,
                                          c10::string_view activation_format, c10::string_view kernel,
                                          c10::string_view epilogue) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return packed_ternary_linear(input, packed, scale, bias, in_features, activation_format, kernel, epilogue);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_autograd);
}

}  // namespace bittorch::ops
