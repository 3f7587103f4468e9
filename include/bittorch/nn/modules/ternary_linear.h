#pragma once

#include <bittorch/nn/options/ternary_linear.h>
#include <bittorch/nn/quantized_weight_cache.h>
#include <bittorch/quant/formats.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize/input-archive.h>

#include <optional>
#include <ostream>
#include <vector>

namespace bittorch::nn {

/// A drop-in for torch::nn::Linear whose forward uses ternary weights {-1, 0, +1} times a
/// per-channel (or global) scale, computed on every call from the full-precision master
/// `weight` (or kept inside a KeepQuantizedWeights scope), which the optimizer updates
/// through a straight-through estimator.
class BITTORCH_API TernaryLinearImpl : public torch::nn::Cloneable<TernaryLinearImpl> {
 public:
  TernaryLinearImpl(int64_t in_features, int64_t out_features)
      : TernaryLinearImpl(TernaryLinearOptions(in_features, out_features)) {}
  explicit TernaryLinearImpl(const TernaryLinearOptions& options_);

  void reset() override;
  /// Same initialization as torch::nn::Linear: Kaiming-uniform weight (a = sqrt(5)) and a
  /// bias uniform in +-1/sqrt(in_features).
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;

  /// Input [*, in_features] -> output [*, out_features].
  at::Tensor forward(const at::Tensor& input);

  /// The outputs of `layers` (two or more, reading the same input: q, k and v) side by side,
  /// [*, sum of out_features] in order, from one product of their stacked rows
  /// (functional::stacked_ternary_linear); nullopt when the layers differ in anything but
  /// out_features, or their options are not joinable_ternary_linear. The same values as each
  /// layer's forward, up to the order of a GEMM's sums.
  static std::optional<at::Tensor> forward_joined(const std::vector<TernaryLinearImpl*>& layers,
                                                  const at::Tensor& input);

  /// down->forward(max(up->forward(input), 0)^2) as one op (functional::ternary_squared_relu_mlp);
  /// nullopt when the layers differ in anything but their shapes, have a bias, or their options
  /// are not what that function takes.
  static std::optional<at::Tensor> forward_squared_relu_mlp(TernaryLinearImpl& up, TernaryLinearImpl& down,
                                                            const at::Tensor& input);

  /// The ternary codes (weight's dtype, values in {-1, 0, 1}) and scale that forward uses. A
  /// weight holding NaN or Inf is a c10::Error.
  quant::TernarizedWeight get_quantized_weight() const;

  /// torch::load into this layer: a stored weight or bias whose shape disagrees with the
  /// options is a c10::Error, and the layer is left as it was.
  void load(torch::serialize::InputArchive& archive) override;

  TernaryLinearOptions options;
  /// Full-precision master weight [out_features, in_features].
  at::Tensor weight;
  /// [out_features], or undefined when options.bias() is false.
  at::Tensor bias;

 private:
  // A clear error when a cuda_only layer gets an input or weight off the GPU.
  void check_placement(const at::Tensor& input) const;
  // The quantized weight, kept inside a KeepQuantizedWeights scope.
  QuantizedWeightCache quantized_weight_;
};

TORCH_MODULE(TernaryLinear);

/// TernaryLinear for CUDA only (the original BitTorch's explicit CUDA module): a TernaryLinear
/// with options.cuda_only set, which gives a clear error (not a CPU run) when its input or
/// parameters are not on a CUDA device. Move it with `.to(torch::kCUDA)` after construction.
class TernaryLinearCUDA : public TernaryLinear {
 public:
  TernaryLinearCUDA(int64_t in_features, int64_t out_features)
      : TernaryLinearCUDA(TernaryLinearOptions(in_features, out_features)) {}
  explicit TernaryLinearCUDA(TernaryLinearOptions options) : TernaryLinear(options.cuda_only(true)) {}
};

}  // namespace bittorch::nn
