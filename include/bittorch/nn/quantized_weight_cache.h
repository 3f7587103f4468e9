#pragma once

// The quantized weight a TernaryLinear keeps between calls, and the scope that says how long
// it may keep it.

#include <bittorch/export.h>
#include <bittorch/quant/config.h>
#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>

#include <memory>

namespace bittorch::nn {

/// While one is alive on this thread, TernaryLinear layers keep the weight they quantized and
/// use it again in later forwards instead of quantizing it on every call: for a stretch in
/// which the weights do not change, such as the micro-batches of one optimizer step, an
/// evaluation or generation. Leaving the outermost scope drops the kept weights.
///
/// Inside a scope a weight changed in place through the tensor (its version counter) or
/// replaced (its storage or device) is quantized again; a write through .data(), which does
/// not count as a change, is not seen, and torch::optim::SGD steps that way: do not step an
/// optimizer inside a scope.
class BITTORCH_API KeepQuantizedWeights {
 public:
  KeepQuantizedWeights();
  ~KeepQuantizedWeights();
  KeepQuantizedWeights(const KeepQuantizedWeights&) = delete;
  KeepQuantizedWeights& operator=(const KeepQuantizedWeights&) = delete;
  /// Whether a scope is open on this thread.
  static bool active();
};

/// A weight's half of the ternary linear layer (bittorch::ops::ternary_linear_quantize_weight):
/// operand = codes * scale in the call's dtype (when the product or grad_input needs it),
/// 8-bit codes for 8-bit activations, and the scale.
struct QuantizedLinearWeight {
  at::Tensor operand, codes, scale;
};

/// One layer's quantized weight. get() quantizes the weight, or, inside a KeepQuantizedWeights
/// scope, gives again what it gave for the same weight (unchanged since), config, dtype and
/// format; the scope's end drops it. A copy of a cache (a cloned module) shares what it holds
/// until either quantizes anew.
class BITTORCH_API QuantizedWeightCache {
 public:
  QuantizedLinearWeight get(const at::Tensor& weight, const quant::QuantConfig& config, at::ScalarType dtype,
                            quant::ActivationFormat format, bool keep_operand);

  struct Entry;

 private:
  std::shared_ptr<Entry> kept_;
};

}  // namespace bittorch::nn
