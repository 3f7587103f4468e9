// Autocast implementation: under torch::autocast on CUDA, ternary_linear runs in the autocast
// dtype (bfloat16 or float16), as torch::nn::Linear does. It only casts and redispatches: the
// input and bias are cast; a float32 master weight is not, since the op's dtype contract
// takes it with a 16-bit input and quantizes it straight into that dtype (no cast pass over
// the weight).

#include <bittorch/ops/ternary_linear.h>

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor ternary_linear_autocast(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, double threshold_factor, bool per_channel,
                                   c10::string_view scale_mode, c10::string_view activation_format,
                                   c10::string_view gradient_format) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  const auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, c10::DeviceType::CUDA); };
  const at::Tensor kept_weight = weight.scalar_type() == at::kFloat ? weight : cast(weight);
  return ternary_linear(cast(input), kept_weight, bias ? std::optional(cast(*bias)) : std::nullopt, threshold_factor,
                        per_channel, scale_mode, activation_format, gradient_format);
}

// The input and bias in the autocast dtype; the quantized weight must have been made for it (and
// a quantized input, which is not cast, from the input in that dtype).
at::Tensor ternary_linear_quantized_autocast(const at::Tensor& input, const at::Tensor& weight,
                                             const std::optional<at::Tensor>& operand,
                                             const std::optional<at::Tensor>& codes, const at::Tensor& scale,
                                             const std::optional<at::Tensor>& bias, c10::string_view activation_format,
                                             c10::string_view gradient_format,
                                             const std::optional<at::Tensor>& input_values,
                                             const std::optional<at::Tensor>& input_scale) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  const auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, c10::DeviceType::CUDA); };
  return ternary_linear_quantized(cast(input), weight, operand, codes, scale,
                                  bias ? std::optional(cast(*bias)) : std::nullopt, activation_format, gradient_format,
                                  input_values, input_scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, AutocastCUDA, m) {
  m.impl("ternary_linear", &ternary_linear_autocast);
  m.impl("ternary_linear_quantized", &ternary_linear_quantized_autocast);
}

}  // namespace bittorch::ops
