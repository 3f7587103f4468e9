#include <bittorch/nn/functional/transformer.h>

#include <ATen/ATen.h>

namespace bittorch::nn::functional {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(weight.dim() == 1 && x.size(-1) == weight.size(0), "rms_norm: weight of ", weight.sizes(),
              " for input of ", x.sizes());
  return at::rms_norm(x, {x.size(-1)}, weight, eps);
}

std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t positions, int64_t head_size, double base, c10::Device device) {
  TORCH_CHECK(head_size % 2 == 0 && head_size > 0, "rotary_tables: the head size must be even, not ", head_size);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const auto inverse_frequency = at::pow(base, -at::arange(0, head_size, 2, options) / static_cast<double>(head_size));
  const auto angles = at::outer(at::arange(positions, options), inverse_frequency);
  return {at::cat({angles.cos(), angles.cos()}, 1).to(device), at::cat({-angles.sin(), angles.sin()}, 1).to(device)};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& signed_sin) {
  // roll(x) = (x2, x1): with the sine's first half negated, x * cos + roll(x) * signed_sin is
  // (x1 cos - x2 sin, x2 cos + x1 sin) in three kernels.
  return at::addcmul(x * cos.to(x.scalar_type()), x.roll(x.size(-1) / 2, -1), signed_sin.to(x.scalar_type()));
}

}  // namespace bittorch::nn::functional
