#pragma once

#include <bittorch/nn/modules/packed_ternary_linear.h>

#include <string>

namespace bittorch::nn {

/// PackedTernaryLinear(layer), on the layer's device. Any error (a weight holding NaN or Inf,
/// which the quantizer refuses) is rethrown naming `caller` and the layer `name`: what
/// bittorch::pack and bittorch::save_packed both do with each TernaryLinear.
PackedTernaryLinear pack_layer(const TernaryLinearImpl& layer, const std::string& name, const char* caller);

}  // namespace bittorch::nn
