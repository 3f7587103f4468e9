#include <bittorch/nn/options/packed_ternary_linear.h>
#include <bittorch/nn/options/ternary_linear.h>

namespace bittorch::nn {

TernaryLinearOptions::TernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

PackedTernaryLinearOptions::PackedTernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

namespace functional {

TernaryLinearFuncOptions::TernaryLinearFuncOptions(const TernaryLinearOptions& options)
    : quant_(options.quant()), quantize_(options.quantize()), use_cuda_kernel_(options.use_cuda_kernel()) {}

}  // namespace functional
}  // namespace bittorch::nn
