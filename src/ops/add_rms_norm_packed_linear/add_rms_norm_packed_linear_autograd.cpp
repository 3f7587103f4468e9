#include <bittorch/ops/add_rms_norm_packed_linear.h>

#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

// Inference only: the outputs never require grad.
std::tuple<at::Tensor, at::Tensor> add_rms_norm_packed_linear_autograd(
    const at::Tensor& input, const at::Tensor& residual, const at::Tensor& norm_weight, double eps,
    const at::Tensor& packed, const at::Tensor& scale, const std::optional<at::Tensor>& bias, int64_t in_features,
    c10::string_view activation_format, c10::string_view epilogue) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return add_rms_norm_packed_linear(input, residual, norm_weight, eps, packed, scale, bias, in_features,
                                    activation_format, epilogue);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("add_rms_norm_packed_linear", &add_rms_norm_packed_linear_autograd);
}

}  // namespace bittorch::ops
