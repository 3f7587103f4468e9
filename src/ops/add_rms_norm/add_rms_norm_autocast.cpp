// Autocast implementation: under torch::autocast on CUDA, add_rms_norm keeps a float32 sum
// (the residual stream) and writes its output in the autocast dtype, the dtype of the
// projections that read it. Written as float32 and cast by each projection, the output would
// cost a cast per reader forward and, backward, a cast of each reader's gradient and their
// sum in float32; rounded once in the kernel it is the same values.

#include <bittorch/ops/add_rms_norm.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> add_rms_norm_autocast(const at::Tensor& input, const at::Tensor& residual,
                                                         const at::Tensor& weight, double eps,
                                                         std::optional<at::ScalarType> output_dtype) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  // Only a float32 sum is autocast's to narrow (float64 stays float64, as autocast leaves it).
  if (!output_dtype && at::promote_types(input.scalar_type(), residual.scalar_type()) == at::kFloat) {
    output_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  }
  return add_rms_norm(input, residual, weight, eps, output_dtype);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, AutocastCUDA, m) {
  m.impl("add_rms_norm", &add_rms_norm_autocast);
}

}  // namespace bittorch::ops
