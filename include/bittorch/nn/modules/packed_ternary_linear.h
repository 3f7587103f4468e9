#pragma once

#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/nn/options/packed_ternary_linear.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <ostream>

namespace bittorch::nn {

/// Inference-only TernaryLinear on packed weights (docs/packed-format.md): 2 bits per
/// weight, a float32 scale per output row and the bias, all buffers; no full-precision
/// weight. Built from a trained TernaryLinear, whose outputs it reproduces.
class BITTORCH_API PackedTernaryLinearImpl : public torch::nn::Cloneable<PackedTernaryLinearImpl> {
 public:
  explicit PackedTernaryLinearImpl(const PackedTernaryLinearOptions& options_);
  /// Packs `layer`'s quantized weight (its current master weight through its quantizer).
  explicit PackedTernaryLinearImpl(const TernaryLinearImpl& layer);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// Input [*, in_features] (float32, float16 or bfloat16) -> output [*, out_features] in
  /// the input's dtype. Not differentiable.
  at::Tensor forward(const at::Tensor& input);

  /// Bytes of the weights in memory: packed codes and scales (the bias excluded).
  int64_t weight_bytes() const;

  /// torch::load, with the shape checks of TernaryLinear.
  void load(torch::serialize::InputArchive& archive) override;

  PackedTernaryLinearOptions options;
  /// int32 [out_features, ceil(in_features / 16)].
  at::Tensor packed;
  /// float32 [out_features].
  at::Tensor scale;
  /// float32 [out_features], or undefined.
  at::Tensor bias;
};

TORCH_MODULE(PackedTernaryLinear);

}  // namespace bittorch::nn
