#include <bittorch/nn/functional/ternary_linear.h>

#include <bittorch/ops/quantize_activations.h>
#include <bittorch/ops/ternarize.h>
#include <bittorch/ops/ternary_linear.h>

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/linear.h>

namespace bittorch::nn::functional {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The unfused path: codes * scale as an autograd node of its own whose gradient is the
// straight-through estimator (grad_w = scale * grad_w_eff), then torch's own linear.
class DequantizeSte : public torch::autograd::Function<DequantizeSte> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight, const quant::QuantConfig& config,
                            at::ScalarType dtype) {
    auto [codes, scale] = ternarize(weight, config);
    ctx->save_for_backward({scale});
    return (codes.to(scale.scalar_type()) * scale.unsqueeze(1)).to(dtype);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor scale = ctx->get_saved_variables()[0];
    const at::Tensor& grad = grad_outputs[0];
    return {(grad.to(scale.scalar_type()) * scale.unsqueeze(1)).to(grad.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

// The unfused path's activation quantization: forward dequantize(quantize(x)) in x's dtype,
// backward the identity (straight-through).
class QuantizeActivationsSte : public torch::autograd::Function<QuantizeActivationsSte> {
 public:
  static at::Tensor forward(AutogradContext* /*ctx*/, const at::Tensor& input, quant::ActivationFormat format) {
    auto [values, scale] = quantize_activations(input, format);
    return (values.to(at::kFloat) * scale).to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* /*ctx*/, variable_list grad_outputs) {
    return {grad_outputs[0], at::Tensor()};
  }
};

}  // namespace

quant::GradientFormat gradient_format_for(const quant::QuantConfig& config) {
  return config.gradient_bits() == 8 ? quant::GradientFormat::Float8E5M2 : quant::GradientFormat::None;
}

at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                          const TernaryLinearFuncOptions& options, QuantizedWeightCache* cache) {
  if (!options.quantize()) {
    return torch::nn::functional::linear(input, weight, bias);
  }
  const auto& config = options.quant();
  const auto activation_format = ops::activation_format_for(config.activation_bits(), input.device());
  if (!options.fused()) {
    TORCH_CHECK(config.gradient_bits() == 0,
                "bittorch::ternary_linear: gradient_bits(8) needs the fused op (fused(true))");
    TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
                "bittorch::ternary_linear: expected input and weight of the same dtype, but got "
                "input ",
                input.scalar_type(), " and weight ", weight.scalar_type());
    const at::Tensor used_input = activation_format == quant::ActivationFormat::None
                                      ? input
                                      : QuantizeActivationsSte::apply(input, activation_format);
    return torch::nn::functional::linear(used_input, DequantizeSte::apply(weight, config, input.scalar_type()), bias);
  }
  // Under CUDA autocast the input and bias in the autocast dtype, cast as the op's Autocast
  // kernels cast them; the weight as it is (a float32 master weight is quantized straight into
  // that dtype).
  at::Tensor x = input, b = bias;
  if (input.is_cuda() && at::isFloatingType(input.scalar_type()) && at::autocast::is_autocast_enabled(at::kCUDA)) {
    const auto dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    x = at::autocast::cached_cast(dtype, input, c10::DeviceType::CUDA);
    if (b.defined()) b = at::autocast::cached_cast(dtype, bias, c10::DeviceType::CUDA);
  }
  const auto optional = [](const at::Tensor& t) { return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt; };
  const std::string scale_mode = quant::to_string(config.scale_mode()), format = quant::to_string(activation_format),
                    gradient_format = quant::to_string(gradient_format_for(config));
  ops::check_ternary_linear_args(x, weight, optional(b), config.threshold_factor(), scale_mode, format,
                                 gradient_format);
  // grad_input needs the operand.
  const bool keep_operand = at::GradMode::is_enabled() && x.requires_grad();
  const auto quantized = cache != nullptr
                             ? cache->get(weight, config, x.scalar_type(), activation_format, keep_operand)
                             : quantize_linear_weight(weight, config, x.scalar_type(), activation_format, keep_operand);
  return ops::ternary_linear_quantized(x, weight, optional(quantized.operand), optional(quantized.codes),
                                       quantized.scale, optional(b), format, gradient_format);
}

QuantizedLinearWeight quantize_linear_weight(const at::Tensor& weight, const quant::QuantConfig& config,
                                             at::ScalarType dtype, quant::ActivationFormat format, bool keep_operand) {
  auto [operand, codes, scale] = ops::ternary_linear_quantize_weight(
      weight, config.threshold_factor(), config.per_channel(), quant::to_string(config.scale_mode()),
      quant::to_string(format), dtype, keep_operand);
  return {std::move(operand), std::move(codes), std::move(scale)};
}

quant::TernarizedWeight ternarize(const at::Tensor& weight, const quant::QuantConfig& config) {
  auto [codes, scale] =
      ops::ternarize(weight, config.threshold_factor(), config.per_channel(), quant::to_string(config.scale_mode()));
  return {std::move(codes), std::move(scale)};
}

quant::QuantizedActivations quantize_activations(const at::Tensor& input, quant::ActivationFormat format) {
  auto [values, scale] = ops::quantize_activations(input, quant::to_string(format));
  return {std::move(values), std::move(scale)};
}

}  // namespace bittorch::nn::functional
