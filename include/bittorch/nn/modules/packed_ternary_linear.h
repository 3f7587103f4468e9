#pragma once

#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/nn/options/packed_ternary_linear.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <ostream>
#include <string>

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

namespace bittorch {

/// A copy of `model` with every TernaryLinear replaced by a PackedTernaryLinear (on the
/// layer's device) and every other module cloned; `model` is left as it was. Modules of your
/// own that hold TernaryLinear members build PackedTernaryLinear(*layer) themselves. A layer
/// whose weight holds NaN or Inf is a c10::Error naming it.
BITTORCH_API torch::nn::Sequential pack(const torch::nn::Sequential& model);

/// Writes `model` (PackedTernaryLinear, TernaryLinear - packed on the way - and ReLU modules)
/// as a packed model file: 1.6 bits per weight, a header and a CRC-32 (docs/packed-format.md),
/// through bittorch::io::write_file_atomically. A non-finite weight, scale or bias is a
/// c10::Error naming the layer.
BITTORCH_API void save_packed(const torch::nn::Sequential& model, const std::string& path);

/// Reads a file written by save_packed into a Sequential of PackedTernaryLinear and ReLU
/// modules (on the CPU), in about the memory of the loaded model plus the file's size. A
/// missing, non-regular (a directory, a FIFO, a device), truncated, corrupted, other-version
/// or inconsistent file, or one with non-finite scales, is a c10::Error that says which.
BITTORCH_API torch::nn::Sequential load_packed(const std::string& path);

}  // namespace bittorch
