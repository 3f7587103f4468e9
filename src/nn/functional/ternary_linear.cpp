#include <bittorch/nn/functional/ternary_linear.h>

#include <bittorch/ops/quantize_activations.h>
#include <bittorch/ops/squared_relu.h>
#include <bittorch/ops/squared_relu_mlp.h>
#include <bittorch/ops/ternarize.h>
#include <bittorch/ops/ternary_linear.h>

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/linear.h>

#include <numeric>
#include <optional>
#include <vector>

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

// The product's `weight` argument in joined_ternary_linear, which only receives grad_w (the op
// never reads it): the weights' stacked shape without data, whose backward hands each weight
// its rows of the gradient (views, not copies).
class StackedRowsGradient : public torch::autograd::Function<StackedRowsGradient> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::TensorList weights) {
    std::vector<int64_t> rows;
    for (const auto& weight : weights) rows.push_back(weight.size(0));
    ctx->saved_data["rows"] = rows;
    const int64_t stacked = std::accumulate(rows.begin(), rows.end(), int64_t{0});
    return at::empty({}, weights.front().options()).expand({stacked, weights.front().size(1)});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    return grad_outputs[0].split_with_sizes(ctx->saved_data["rows"].toIntVector(), 0);
  }
};

// The quantized operand codes * scale standing for the master weight in a product that takes
// the operand (ops::squared_relu_mlp): the straight-through estimator gives the weight the
// operand's gradient times the scale, in the weight's dtype, as ternary_linear's backward does.
class OperandSte : public torch::autograd::Function<OperandSte> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& operand,
                            const at::Tensor& scale) {
    ctx->save_for_backward({scale});
    ctx->saved_data["weight_dtype"] = weight.scalar_type();
    return operand;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor scale = ctx->get_saved_variables()[0];
    const auto weight_dtype = ctx->saved_data["weight_dtype"].toScalarType();
    return {(grad_outputs[0] * scale.unsqueeze(1)).to(weight_dtype), at::Tensor(), at::Tensor()};
  }
};

std::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Under CUDA autocast an input or bias in the autocast dtype, cast as the op's Autocast kernels
// cast them (the weight stays as it is: a float32 master weight is quantized straight into
// that dtype).
at::Tensor autocast_operand(const at::Tensor& t) {
  if (!t.defined() || !t.is_cuda() || !at::isFloatingType(t.scalar_type()) ||
      !at::autocast::is_autocast_enabled(at::kCUDA)) {
    return t;
  }
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(at::kCUDA), t, c10::DeviceType::CUDA);
}

void check_fused_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      const TernaryLinearFuncOptions& options, quant::ActivationFormat activation_format) {
  const auto& config = options.quant();
  ops::check_ternary_linear_args(x, weight, optional(bias), config.threshold_factor(),
                                 quant::to_string(config.scale_mode()), quant::to_string(activation_format),
                                 quant::to_string(gradient_format_for(config)));
}

QuantizedLinearWeight quantize_for(const at::Tensor& weight, const quant::QuantConfig& config, at::ScalarType dtype,
                                   quant::ActivationFormat format, bool keep_operand, QuantizedWeightCache* cache) {
  return cache != nullptr ? cache->get(weight, config, dtype, format, keep_operand)
                          : quantize_linear_weight(weight, config, dtype, format, keep_operand);
}

// The fused path of ternary_linear for an input already in its dtype (autocast_operand), from
// input_values and input_scale where the input came quantized.
at::Tensor fused_ternary_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                                const TernaryLinearFuncOptions& options, quant::ActivationFormat activation_format,
                                QuantizedWeightCache* cache, const at::Tensor& input_values = {},
                                const at::Tensor& input_scale = {}) {
  const auto& config = options.quant();
  check_fused_args(x, weight, b, options, activation_format);
  // grad_input needs the operand.
  const bool keep_operand = at::GradMode::is_enabled() && x.requires_grad();
  const auto quantized = quantize_for(weight, config, x.scalar_type(), activation_format, keep_operand, cache);
  return ops::ternary_linear_quantized(x, weight, optional(quantized.operand), optional(quantized.codes),
                                       quantized.scale, optional(b), quant::to_string(activation_format),
                                       quant::to_string(gradient_format_for(config)), optional(input_values),
                                       optional(input_scale));
}

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
  return fused_ternary_linear(autocast_operand(input), weight, autocast_operand(bias), options, activation_format,
                              cache);
}

bool joinable_ternary_linear(const TernaryLinearFuncOptions& options) {
  return options.quantize() && options.fused() && gradient_format_for(options.quant()) == quant::GradientFormat::None;
}

std::optional<at::Tensor> ternary_squared_relu_mlp(const at::Tensor& input, const at::Tensor& up_weight,
                                                   const at::Tensor& down_weight,
                                                   const TernaryLinearFuncOptions& options,
                                                   QuantizedWeightCache* up_cache, QuantizedWeightCache* down_cache) {
  const auto& config = options.quant();
  if (!joinable_ternary_linear(options)) return std::nullopt;
  const at::Tensor x = autocast_operand(input);
  const auto activation_format = ops::activation_format_for(config.activation_bits(), input.device());
  if (activation_format != quant::ActivationFormat::None) {
    // The squared ReLU quantizes the hidden rows as it writes them, for the down projection.
    const at::Tensor up = fused_ternary_linear(x, up_weight, at::Tensor(), options, activation_format, up_cache);
    const auto [hidden, values, scale] = ops::squared_relu_quantized(up, quant::to_string(activation_format));
    return fused_ternary_linear(hidden, down_weight, at::Tensor(), options, activation_format, down_cache, values,
                                scale);
  }
  const auto operand = [&](const at::Tensor& weight, QuantizedWeightCache* cache) {
    // The layer's checks, for an input of its width (the down projection's is the hidden one).
    check_fused_args(x.new_empty({0, weight.size(-1)}), weight, at::Tensor(), options, quant::ActivationFormat::None);
    const auto quantized =
        quantize_for(weight, config, x.scalar_type(), quant::ActivationFormat::None, /*keep_operand=*/true, cache);
    return OperandSte::apply(weight, quantized.operand, quantized.scale);
  };
  return ops::squared_relu_mlp(x, operand(up_weight, up_cache), operand(down_weight, down_cache));
}

std::vector<at::Tensor> joined_ternary_linear(const at::Tensor& input, const std::vector<at::Tensor>& weights,
                                              const std::vector<at::Tensor>& biases,
                                              const TernaryLinearFuncOptions& options,
                                              const std::vector<QuantizedWeightCache*>& caches) {
  std::vector<int64_t> rows;
  for (const auto& weight : weights) rows.push_back(weight.size(0));
  return stacked_ternary_linear(input, weights, biases, options, caches).split_with_sizes(rows, -1);
}

at::Tensor stacked_ternary_linear(const at::Tensor& input, const std::vector<at::Tensor>& weights,
                                  const std::vector<at::Tensor>& biases, const TernaryLinearFuncOptions& options,
                                  const std::vector<QuantizedWeightCache*>& caches) {
  TORCH_CHECK(joinable_ternary_linear(options),
              "bittorch::stacked_ternary_linear: expected options that quantize on the fused path without FP8 "
              "gradients (quantize(true), fused(true), gradient_bits(0))");
  TORCH_CHECK(!weights.empty() && (biases.empty() || biases.size() == weights.size()) &&
                  (caches.empty() || caches.size() == weights.size()),
              "bittorch::stacked_ternary_linear: expected at least one weight, and as many biases and caches (or "
              "none), but got ",
              weights.size(), " weights, ", biases.size(), " biases and ", caches.size(), " caches");
  const auto& config = options.quant();
  const auto activation_format = ops::activation_format_for(config.activation_bits(), input.device());
  const at::Tensor x = autocast_operand(input);
  const bool keep_operand = at::GradMode::is_enabled() && x.requires_grad();
  std::vector<at::Tensor> operands, codes, scales, used_biases;
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor b = biases.empty() ? at::Tensor() : autocast_operand(biases[i]);
    TORCH_CHECK(biases.empty() || biases[i].defined() == biases.front().defined(),
                "bittorch::stacked_ternary_linear: expected a bias for every weight or for none");
    check_fused_args(x, weights[i], b, options, activation_format);
    const auto quantized = quantize_for(weights[i], config, x.scalar_type(), activation_format, keep_operand,
                                        caches.empty() ? nullptr : caches[i]);
    if (quantized.operand.defined()) operands.push_back(quantized.operand);
    if (quantized.codes.defined()) codes.push_back(quantized.codes);
    scales.push_back(quantized.scale.expand({weights[i].size(0)}));  // [1] (one per layer) or [rows]
    if (b.defined()) used_biases.push_back(b);
  }
  // A kept weight may hold its operand where a fresh one has none (8-bit activations without
  // grad_input): the operand only where every layer has it.
  if (operands.size() != weights.size()) operands.clear();
  const auto joined = [](const std::vector<at::Tensor>& parts) {
    return parts.empty() ? at::Tensor() : at::cat(parts);
  };
  return ops::ternary_linear_quantized(x, StackedRowsGradient::apply(at::TensorList(weights)),
                                       optional(joined(operands)), optional(joined(codes)), at::cat(scales),
                                       optional(joined(used_biases)), quant::to_string(activation_format),
                                       quant::to_string(quant::GradientFormat::None));
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
