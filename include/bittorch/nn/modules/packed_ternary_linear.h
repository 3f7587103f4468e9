#pragma once

#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/nn/options/packed_ternary_linear.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>

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
  /// max(forward(input), 0)^2 in one kernel (the op's "squared_relu" epilogue, on the float32
  /// outputs before they are rounded): an MLP's up-projection and squared ReLU.
  at::Tensor forward_squared_relu(const at::Tensor& input);
  /// (forward(normed) or forward_squared_relu(normed), sum) for (normed, sum) =
  /// ops::add_rms_norm(input, residual, norm_weight, eps): on CUDA one kernel for a decode
  /// step's few rows (ops::add_rms_norm_packed_linear).
  std::tuple<at::Tensor, at::Tensor> forward_after_norm(const at::Tensor& input, const at::Tensor& residual,
                                                        const at::Tensor& norm_weight, double eps,
                                                        bool squared_relu = false);

  /// Moves the layer; its buffers keep their formats whatever the dtype asked for (int32
  /// codes, float32 scale and bias), as its kernels read them: a model holding it casts to
  /// bfloat16 with model->to(torch::kBFloat16) and the layer computes in its input's dtype.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  using torch::nn::Module::to;

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

 private:
  at::Tensor compute(const at::Tensor& input, c10::string_view epilogue);
  // The op's arguments for inputs of `input`'s dtype and device.
  std::optional<at::Tensor> bias_for(const at::Tensor& input) const;
  std::string activation_format_for(const at::Tensor& input) const;

  // The float32 bias converted to the dtype of 16-bit inputs, kept while `bias` is the same
  // tensor at the same version (no in-place change): a cast in every forward is a kernel more
  // per call, between the packed kernels that otherwise overlap their launches. A copy of the
  // layer (clone) starts without one.
  struct ConvertedBias {
    ConvertedBias() = default;
    ConvertedBias(const ConvertedBias& /*other*/) {}
    ConvertedBias& operator=(const ConvertedBias& /*other*/);
    std::mutex mutex;
    at::Tensor source;  // the bias it was converted from, held so that it is not another one at the same address
    int64_t source_version = 0;
    at::Tensor converted;
  };
  mutable ConvertedBias converted_bias_;
};

TORCH_MODULE(PackedTernaryLinear);

/// PackedTernaryLinear(layer), on the layer's device. Any error (a weight holding NaN or Inf,
/// which the quantizer refuses) is rethrown naming `caller` and the layer's `path`: what
/// nn::pack and io::save_packed do with each TernaryLinear.
BITTORCH_API PackedTernaryLinear pack_layer(const TernaryLinearImpl& layer, const std::string& path,
                                            const char* caller);

}  // namespace bittorch::nn
