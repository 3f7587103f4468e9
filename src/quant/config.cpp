#include <bittorch/quant/config.h>

#include <c10/util/Exception.h>

#include <sstream>

namespace bittorch::quant {

bool operator==(const QuantConfig& a, const QuantConfig& b) {
  return a.scale_mode() == b.scale_mode() && a.threshold_factor() == b.threshold_factor() &&
         a.per_channel() == b.per_channel() && a.activation_bits() == b.activation_bits() &&
         a.gradient_bits() == b.gradient_bits();
}

std::optional<QuantConfigProblem> find_problem(const QuantConfig& config) {
  if (config.scale_mode() != ScaleMode::Max && config.scale_mode() != ScaleMode::AbsMean) {
    return QuantConfigProblem{"scale_mode", "expected scale_mode max or absmean, but got the value " +
                                                std::to_string(static_cast<int>(config.scale_mode()))};
  }
  if (!(config.threshold_factor() >= 0.0 && config.threshold_factor() <= 1.0)) {
    std::ostringstream message;
    message << "expected threshold_factor in [0, 1], but got " << config.threshold_factor();
    return QuantConfigProblem{"threshold_factor", message.str()};
  }
  if (config.activation_bits() != 0 && config.activation_bits() != 8) {
    return QuantConfigProblem{"activation_bits", "expected activation_bits 0 (off) or 8, but got " +
                                                     std::to_string(config.activation_bits())};
  }
  if (config.gradient_bits() != 0 && config.gradient_bits() != 8) {
    return QuantConfigProblem{"gradient_bits",
                              "expected gradient_bits 0 (off) or 8, but got " + std::to_string(config.gradient_bits())};
  }
  return std::nullopt;
}

void check_quant_config(const QuantConfig& config, const char* who) {
  const auto problem = find_problem(config);
  TORCH_CHECK(!problem, who, ": ", problem ? problem->message : "");
}

std::ostream& operator<<(std::ostream& stream, const QuantConfig& config) {
  const auto flags = stream.flags();
  stream << std::boolalpha << "scale_mode=" << to_string(config.scale_mode())
         << ", threshold_factor=" << config.threshold_factor() << ", per_channel=" << config.per_channel()
         << ", activation_bits=" << config.activation_bits();
  if (config.gradient_bits() != 0) stream << ", gradient_bits=" << config.gradient_bits();
  stream.flags(flags);
  return stream;
}

}  // namespace bittorch::quant
