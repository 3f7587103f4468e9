#include <bittorch/nn/options/packed_ternary_linear.h>

namespace bittorch::nn {

PackedTernaryLinearOptions::PackedTernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

}  // namespace bittorch::nn
