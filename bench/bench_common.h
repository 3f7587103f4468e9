#pragma once

// Pieces both benchmark executables use.

#include <c10/util/Exception.h>
#include <cxxopts.hpp>

#include <cstdint>
#include <iostream>
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

/// Runs a benchmark's main body: usage errors exit 2, other errors 1, each with a message.
template <typename Body>
int run_reporting_errors(const char* program, Body&& body) {
  try {
    return body();
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\nUsage: " << program << " --help\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << program << ": error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
  }
  return 1;
}

}  // namespace bittorch::bench
