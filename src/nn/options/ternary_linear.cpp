#include <bittorch/nn/options/ternary_linear.h>

namespace bittorch::nn {

TernaryLinearOptions::TernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

namespace functional {

TernaryLinearFuncOptions::TernaryLinearFuncOptions(const TernaryLinearOptions& options)
    : quant_(options.quant()), quantize_(options.quantize()), fused_(options.fused()) {}

}  // namespace functional
}  // namespace bittorch::nn
