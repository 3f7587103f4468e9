#include <bittorch/nn/options/ternary_linear.h>

namespace bittorch::nn {

TernaryLinearOptions::TernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

TernaryLinearCUDAOptions::TernaryLinearCUDAOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

namespace functional {

TernaryLinearFuncOptions::TernaryLinearFuncOptions(const TernaryLinearOptions& options)
    : threshold_factor_(options.threshold_factor()),
      per_channel_(options.per_channel()),
      quantize_(options.quantize()),
      use_cuda_kernel_(options.use_cuda_kernel()),
      scale_mode_(options.scale_mode()),
      activation_bits_(options.activation_bits()) {}

TernaryLinearFuncOptions::TernaryLinearFuncOptions(const TernaryLinearCUDAOptions& options)
    : threshold_factor_(options.threshold_factor()),
      per_channel_(options.per_channel()),
      quantize_(options.quantize()),
      scale_mode_(options.scale_mode()),
      activation_bits_(options.activation_bits()) {}

quant::TernarizeOptions TernaryLinearFuncOptions::ternarize_options() const {
  return quant::TernarizeOptions()
      .threshold_factor(threshold_factor())
      .per_channel(per_channel())
      .scale_mode(scale_mode());
}

}  // namespace functional
}  // namespace bittorch::nn
