// Autocast implementation: under torch::autocast on CUDA, linear_cross_entropy's projection
// runs in the autocast dtype, as a linear layer's does: input and weight are cast (the
// weight's cast cached for the autocast region) and the op redispatched.

#include <bittorch/ops/linear_cross_entropy.h>

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor linear_cross_entropy_autocast(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                         int64_t ignore_index, int64_t chunk_rows) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  const auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, c10::DeviceType::CUDA); };
  return linear_cross_entropy(cast(input), cast(weight), target, ignore_index, chunk_rows);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, AutocastCUDA, m) {
  m.impl("linear_cross_entropy", &linear_cross_entropy_autocast);
}

}  // namespace bittorch::ops
