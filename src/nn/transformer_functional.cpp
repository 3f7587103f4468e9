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
  const auto angles = at::outer(at::arange(positions, options), inverse_frequency).repeat({1, 2});
  return {angles.cos().to(device), angles.sin().to(device)};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const auto rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.to(x.scalar_type()) + rotated * sin.to(x.scalar_type());
}

}  // namespace bittorch::nn::functional
