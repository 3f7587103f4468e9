#include <bittorch/quant/formats.h>

#include <c10/util/Exception.h>

namespace bittorch::quant {

std::string to_string(ScaleMode mode) {
  switch (mode) {
    case ScaleMode::Max:
      return "max";
    case ScaleMode::AbsMean:
      return "absmean";
  }
  TORCH_CHECK(false, "bittorch: unknown ScaleMode value ", static_cast<int>(mode));
}

ScaleMode scale_mode_from_string(std::string_view name) {
  if (name == "max") return ScaleMode::Max;
  if (name == "absmean") return ScaleMode::AbsMean;
  TORCH_CHECK(false, "bittorch: expected scale_mode \"max\" or \"absmean\", but got \"", name, "\"");
}

std::string to_string(ActivationFormat format) {
  switch (format) {
    case ActivationFormat::None:
      return "none";
    case ActivationFormat::Int8:
      return "int8";
    case ActivationFormat::Float8E4M3:
      return "float8_e4m3";
  }
  TORCH_CHECK(false, "bittorch: unknown ActivationFormat value ", static_cast<int>(format));
}

ActivationFormat activation_format_from_string(std::string_view name) {
  if (name == "none") return ActivationFormat::None;
  if (name == "int8") return ActivationFormat::Int8;
  if (name == "float8_e4m3") return ActivationFormat::Float8E4M3;
  TORCH_CHECK(false,
              "bittorch: expected activation_format \"none\", \"int8\" or \"float8_e4m3\", "
              "but got \"",
              name, "\"");
}

std::string to_string(GradientFormat format) {
  switch (format) {
    case GradientFormat::None:
      return "none";
    case GradientFormat::Float8E5M2:
      return "float8_e5m2";
  }
  TORCH_CHECK(false, "bittorch: unknown GradientFormat value ", static_cast<int>(format));
}

GradientFormat gradient_format_from_string(std::string_view name) {
  if (name == "none") return GradientFormat::None;
  if (name == "float8_e5m2") return GradientFormat::Float8E5M2;
  TORCH_CHECK(false, "bittorch: expected gradient_format \"none\" or \"float8_e5m2\", but got \"", name, "\"");
}

}  // namespace bittorch::quant
