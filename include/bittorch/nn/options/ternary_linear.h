#pragma once

#include <bittorch/export.h>
#include <bittorch/quant/config.h>

#include <torch/arg.h>

#include <cstdint>

namespace bittorch::nn {

/// Options for `TernaryLinear`, in the style of `torch::nn::LinearOptions`; how it quantizes is
/// a `quant::QuantConfig`.
///
///   bittorch::nn::TernaryLinear layer(bittorch::nn::TernaryLinearOptions(784, 256).quant(
///       bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean)));
struct BITTORCH_API TernaryLinearOptions {
  TernaryLinearOptions(int64_t in_features, int64_t out_features);

  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  /// Adds a learnable bias, as torch::nn::Linear does.
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(quant::QuantConfig, quant) = {};
  /// false: behave exactly like torch::nn::Linear (full-precision weights).
  TORCH_ARG(bool, quantize) = true;
  /// true: the fused bittorch::ternary_linear op (its CPU and CUDA kernels). false: the
  /// unfused path (the bittorch::ternarize op, then torch's own linear, with a
  /// straight-through autograd node between them), on every device. Same results; meant for
  /// checking. (The Python package's `use_cuda_kernel` argument, after the original API.)
  TORCH_ARG(bool, fused) = true;
  /// true: a clear error (not a CPU run) when the input or the weight is not on a CUDA
  /// device. What `TernaryLinearCUDA` sets.
  TORCH_ARG(bool, cuda_only) = false;
  /// Inside a KeepQuantizedWeights scope, keep the quantized weight for later calls
  /// (false: quantize on every call even there). Costs its memory while the scope lasts:
  /// codes * scale in the activations' dtype, or 8-bit codes with 8-bit activations.
  TORCH_ARG(bool, keep_quantized_weight) = true;
};

/// The options of `TernaryLinearCUDA`, which sets cuda_only.
using TernaryLinearCUDAOptions = TernaryLinearOptions;

namespace functional {

/// Options for `bittorch::nn::functional::ternary_linear`: those of `TernaryLinearOptions`
/// that are not shapes or placement.
struct BITTORCH_API TernaryLinearFuncOptions {
  TernaryLinearFuncOptions() = default;
  /// The functional options that a module with `options` uses.
  /* implicit */ TernaryLinearFuncOptions(const TernaryLinearOptions& options);

  TORCH_ARG(quant::QuantConfig, quant) = {};
  TORCH_ARG(bool, quantize) = true;
  TORCH_ARG(bool, fused) = true;
};

}  // namespace functional
}  // namespace bittorch::nn
