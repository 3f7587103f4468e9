#include <bittorch/quant/config.h>

#include "common/json_field.h"

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

void append_numbers(const QuantConfig& config, std::vector<int64_t>& ints, std::vector<double>& reals) {
  ints.insert(ints.end(),
              {config.activation_bits(), config.per_channel() ? 1 : 0, static_cast<int64_t>(config.scale_mode())});
  reals.push_back(config.threshold_factor());
}

QuantConfig quant_config_from_numbers(const std::vector<int64_t>& ints, size_t first_int,
                                      const std::vector<double>& reals, size_t first_real) {
  TORCH_CHECK(first_int + kQuantConfigInts <= ints.size() && first_real + kQuantConfigReals <= reals.size(),
              "a quantization needs ", kQuantConfigInts, " integers and ", kQuantConfigReals, " real");
  const int64_t per_channel = ints[first_int + 1], scale_mode = ints[first_int + 2];
  TORCH_CHECK(per_channel == 0 || per_channel == 1, "invalid per_channel ", per_channel);
  TORCH_CHECK(scale_mode == 0 || scale_mode == 1, "invalid scale_mode ", scale_mode);
  const auto config = QuantConfig()
                          .activation_bits(ints[first_int])
                          .per_channel(per_channel == 1)
                          .scale_mode(static_cast<ScaleMode>(scale_mode))
                          .threshold_factor(reals[first_real]);
  const auto problem = find_problem(config);
  TORCH_CHECK(!problem, "invalid ", problem ? problem->field : "", ": ", problem ? problem->message : "");
  return config;
}

std::string to_json(const QuantConfig& config) {
  return nlohmann::json{{"scale_mode", to_string(config.scale_mode())},
                        {"threshold_factor", config.threshold_factor()},
                        {"per_channel", config.per_channel()},
                        {"activation_bits", config.activation_bits()},
                        {"gradient_bits", config.gradient_bits()}}
      .dump();
}

QuantConfig quant_config_from_json(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(json.is_object(), "QuantConfig: expected a JSON object, not '", text, "'");
  const auto config =
      QuantConfig()
          .scale_mode(scale_mode_from_string(json_field<std::string>(json, "scale_mode", "QuantConfig")))
          .threshold_factor(json_field<double>(json, "threshold_factor", "QuantConfig"))
          .per_channel(json_field<bool>(json, "per_channel", "QuantConfig"))
          .activation_bits(json_field<int64_t>(json, "activation_bits", "QuantConfig"))
          .gradient_bits(json_field<int64_t>(json, "gradient_bits", "QuantConfig"));
  check_quant_config(config, "QuantConfig");
  return config;
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
