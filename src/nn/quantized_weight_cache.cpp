#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/quantized_weight_cache.h>

#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

namespace bittorch::nn {

// A quantized weight with what it was made from: the weight as it was then, and the call's
// settings.
struct QuantizedWeightCache::Entry {
  int64_t weight_version = 0;
  const void* weight_data = nullptr;
  c10::Device device = c10::kCPU;
  quant::QuantConfig config;
  at::ScalarType dtype = at::kFloat;
  quant::ActivationFormat format = quant::ActivationFormat::None;
  QuantizedLinearWeight quantized;
};

namespace {

// This thread's open scopes and the entries kept in them.
struct Scopes {
  int depth = 0;
  std::vector<std::weak_ptr<QuantizedWeightCache::Entry>> kept;
};
thread_local Scopes scopes;

}  // namespace

KeepQuantizedWeights::KeepQuantizedWeights() {
  ++scopes.depth;
}

KeepQuantizedWeights::~KeepQuantizedWeights() {
  if (--scopes.depth > 0) return;
  for (const auto& weak : scopes.kept) {
    if (const auto kept = weak.lock()) *kept = QuantizedWeightCache::Entry{};  // its memory back, and never a match
  }
  scopes.kept.clear();
}

bool KeepQuantizedWeights::active() {
  return scopes.depth > 0;
}

QuantizedLinearWeight QuantizedWeightCache::get(const at::Tensor& weight, const quant::QuantConfig& config,
                                                at::ScalarType dtype, quant::ActivationFormat format,
                                                bool keep_operand) {
  if (!KeepQuantizedWeights::active()) {
    kept_.reset();
    return functional::quantize_linear_weight(weight, config, dtype, format, keep_operand);
  }
  const bool same = kept_ && kept_->weight_version == weight._version() &&
                    kept_->weight_data == weight.const_data_ptr() && kept_->device == weight.device() &&
                    kept_->config == config && kept_->dtype == dtype && kept_->format == format &&
                    (kept_->quantized.operand.defined() || !keep_operand);
  if (!same) {
    // A new entry, not an update: a copy of this cache shares the old one.
    kept_ = std::make_shared<Entry>(
        Entry{weight._version(), weight.const_data_ptr(), weight.device(), config, dtype, format,
              functional::quantize_linear_weight(weight, config, dtype, format, keep_operand)});
    scopes.kept.push_back(kept_);
  }
  return kept_->quantized;
}

}  // namespace bittorch::nn
