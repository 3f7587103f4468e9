#pragma once

#include <bittorch/export.h>
#include <bittorch/quant/ternarize.h>

#include <torch/arg.h>

#include <cstdint>

namespace bittorch::nn {

/// Options for `TernaryLinear`, in the style of `torch::nn::LinearOptions`.
///
///   bittorch::nn::TernaryLinear layer(
///       bittorch::nn::TernaryLinearOptions(784, 256).scale_mode(bittorch::quant::ScaleMode::AbsMean));
struct BITTORCH_API TernaryLinearOptions {
  TernaryLinearOptions(int64_t in_features, int64_t out_features);

  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  /// Adds a learnable bias, as torch::nn::Linear does.
  TORCH_ARG(bool, bias) = true;
  /// Fraction of the scale below which a weight becomes 0 (ScaleMode::Max only), in [0, 1].
  TORCH_ARG(double, threshold_factor) = 0.05;
  /// One scale per output row (true) or one for the whole matrix (false).
  TORCH_ARG(bool, per_channel) = true;
  /// false: behave exactly like torch::nn::Linear (full-precision weights).
  TORCH_ARG(bool, quantize) = true;
  /// false: run the unfused path (the bittorch::ternarize op, then torch's own linear, with
  /// a straight-through autograd node between them) instead of the fused
  /// bittorch::ternary_linear op and its CUDA kernels. Same results; meant for checking.
  TORCH_ARG(bool, use_cuda_kernel) = true;
  TORCH_ARG(quant::ScaleMode, scale_mode) = quant::ScaleMode::Max;
  /// 8: quantize the input per row to 8 bits before the product (W1.58A8; FP8 e4m3 on CUDA
  /// GPUs of compute capability 8.9 and later, INT8 elsewhere), straight-through in the
  /// backward. 0 (default): the input stays in its dtype.
  TORCH_ARG(int64_t, activation_bits) = 0;
};

/// Options for `TernaryLinearCUDA`: those of `TernaryLinearOptions` without the
/// use_cuda_kernel switch (it always runs the fused CUDA op).
struct BITTORCH_API TernaryLinearCUDAOptions {
  TernaryLinearCUDAOptions(int64_t in_features, int64_t out_features);

  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(double, threshold_factor) = 0.05;
  TORCH_ARG(bool, per_channel) = true;
  TORCH_ARG(bool, quantize) = true;
  TORCH_ARG(quant::ScaleMode, scale_mode) = quant::ScaleMode::Max;
  TORCH_ARG(int64_t, activation_bits) = 0;
};

namespace functional {

/// Options for `bittorch::nn::functional::ternary_linear`: the quantization part of
/// `TernaryLinearOptions`, without the shapes.
struct BITTORCH_API TernaryLinearFuncOptions {
  TernaryLinearFuncOptions() = default;
  /// The functional options that a module with `options` uses.
  /* implicit */ TernaryLinearFuncOptions(const TernaryLinearOptions& options);
  /* implicit */ TernaryLinearFuncOptions(const TernaryLinearCUDAOptions& options);

  TORCH_ARG(double, threshold_factor) = 0.05;
  TORCH_ARG(bool, per_channel) = true;
  TORCH_ARG(bool, quantize) = true;
  TORCH_ARG(bool, use_cuda_kernel) = true;
  TORCH_ARG(quant::ScaleMode, scale_mode) = quant::ScaleMode::Max;
  TORCH_ARG(int64_t, activation_bits) = 0;

 public:
  /// The quantizer settings among these options.
  quant::TernarizeOptions ternarize_options() const;
};

}  // namespace functional
}  // namespace bittorch::nn
