#pragma once

#include <bittorch/export.h>
#include <bittorch/nn/options/ternary_linear.h>
#include <bittorch/nn/quantized_weight_cache.h>
#include <bittorch/quant/config.h>
#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace bittorch::nn::functional {

/// y = x @ (w_tern * scale)^T + bias, with w_tern, scale = ternarize(weight) and
/// straight-through gradients (scale detached):
///   grad_x = grad_y @ (w_tern * scale),  grad_w = scale[:, None] * (grad_y^T @ x),
///   grad_b = sum of grad_y.
/// `input` is [*, in_features], `weight` [out_features, in_features], `bias` [out_features]
/// or undefined. With `quant.activation_bits(8)` x is first quantized per row to 8 bits
/// (see bittorch::ops::activation_format_for), straight-through in the backward.
/// With `options.quantize(false)` this is torch::nn::functional::linear.
///
/// The fused path is bittorch::ops::ternary_linear's two halves: the weight quantized (by
/// `cache` when given, which may keep it: QuantizedWeightCache), then the product. Under CUDA
/// autocast it computes in the autocast dtype, as torch::nn::Linear does.
BITTORCH_API at::Tensor ternary_linear(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias = {},
                                       const TernaryLinearFuncOptions& options = {},
                                       QuantizedWeightCache* cache = nullptr);

/// ternary_linear of one input by several layers that share `options` (q, k and v) as one
/// product: each weight quantized as ternary_linear quantizes it (by its cache when given), the
/// quantized rows stacked with each layer's scale on its rows, then one ternary_linear_quantized.
/// The forward and the input's gradient are one matrix product each (the layers' input
/// gradients summed inside it, not added up afterwards); each weight gets its rows of grad_w.
/// Returns each layer's output in order: slices of one [*, sum of out_features] tensor
/// (stacked_ternary_linear's). `biases` is empty or one per weight; `caches` empty or one (or
/// nullptr) per weight. The options must pass joinable_ternary_linear.
BITTORCH_API std::vector<at::Tensor> joined_ternary_linear(const at::Tensor& input,
                                                           const std::vector<at::Tensor>& weights,
                                                           const std::vector<at::Tensor>& biases,
                                                           const TernaryLinearFuncOptions& options,
                                                           const std::vector<QuantizedWeightCache*>& caches = {});
/// joined_ternary_linear's product itself: the layers' outputs side by side, [*, sum of
/// out_features], for a consumer that takes them joined (ops::rotary_embedding_split).
BITTORCH_API at::Tensor stacked_ternary_linear(const at::Tensor& input, const std::vector<at::Tensor>& weights,
                                               const std::vector<at::Tensor>& biases,
                                               const TernaryLinearFuncOptions& options,
                                               const std::vector<QuantizedWeightCache*>& caches = {});
/// down(max(up(input), 0)^2) for two bias-free ternary layers that share `options`, as one
/// ops::squared_relu_mlp of their quantized weights (codes * scale; by their caches when given),
/// so that on Hopper the activation runs in the products' epilogues. Gradients reach the weights
/// by ternary_linear's straight-through estimator (the operand's gradient times the scale).
/// The same values as the two layers and ops::squared_relu, up to the hidden activation's
/// rounding (once here, twice there). With 8-bit activations the two layers' 8-bit products
/// with ops::squared_relu_quantized between them, which hands the down projection its input
/// already quantized: the same bits as the two layers and ops::squared_relu. nullopt where the
/// options are not joinable_ternary_linear.
BITTORCH_API std::optional<at::Tensor> ternary_squared_relu_mlp(const at::Tensor& input, const at::Tensor& up_weight,
                                                                const at::Tensor& down_weight,
                                                                const TernaryLinearFuncOptions& options,
                                                                QuantizedWeightCache* up_cache = nullptr,
                                                                QuantizedWeightCache* down_cache = nullptr);
/// Whether layers with `options` can be joined by joined_ternary_linear: quantized on the fused
/// path without FP8 gradients (whose scale is one per gradient tensor, so per layer).
BITTORCH_API bool joinable_ternary_linear(const TernaryLinearFuncOptions& options);
/// The weight's half of ternary_linear for a call in `dtype` with activations of `format`
/// (bittorch::ops::ternary_linear_quantize_weight): the operand when `keep_operand` or the
/// format is None. Not differentiable.
BITTORCH_API QuantizedLinearWeight quantize_linear_weight(const at::Tensor& weight, const quant::QuantConfig& config,
                                                          at::ScalarType dtype, quant::ActivationFormat format,
                                                          bool keep_operand);

/// The ternary codes and scale of a 2-D weight [out_features, in_features] under `config`
/// (the bittorch::ternarize op). Not differentiable: the tensors never require grad.
BITTORCH_API quant::TernarizedWeight ternarize(const at::Tensor& weight, const quant::QuantConfig& config = {});

/// An input [*, features] (float32, float16 or bfloat16) quantized per row to `format` (Int8
/// or Float8E4M3; the bittorch::quantize_activations op). Not differentiable.
BITTORCH_API quant::QuantizedActivations quantize_activations(const at::Tensor& input, quant::ActivationFormat format);

/// The backward's gradient format for config.gradient_bits(): Float8E5M2 for 8, None for 0.
BITTORCH_API quant::GradientFormat gradient_format_for(const quant::QuantConfig& config);

}  // namespace bittorch::nn::functional
