// Autocast implementation: under torch::autocast on CUDA, squared_relu_mlp runs in the autocast
// dtype, as the two torch::nn::Linear layers it replaces do: the input and both weights are
// cast, a weight through autocast's cache (cast once per autocast region, as Linear's is).

#include <bittorch/ops/squared_relu_mlp.h>

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor squared_relu_mlp_autocast(const at::Tensor& input, const at::Tensor& up_weight,
                                     const at::Tensor& down_weight) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  const auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, c10::DeviceType::CUDA); };
  return squared_relu_mlp(cast(input), cast(up_weight), cast(down_weight));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, AutocastCUDA, m) {
  m.impl("squared_relu_mlp", &squared_relu_mlp_autocast);
}

}  // namespace bittorch::ops
