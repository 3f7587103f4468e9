#pragma once

// Pieces both benchmark executables use.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace bittorch::bench {

/// "INxOUT" -> (in_features, out_features).
inline std::pair<int64_t, int64_t> parse_shape(const std::string& shape) {
  const auto x_pos = shape.find('x');
  if (x_pos == std::string::npos) throw std::invalid_argument("shape '" + shape + "' is not INxOUT");
  return {std::stoll(shape.substr(0, x_pos)), std::stoll(shape.substr(x_pos + 1))};
}

}  // namespace bittorch::bench
