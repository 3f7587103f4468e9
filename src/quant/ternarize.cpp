#include <bittorch/quant/ternarize.h>

#include <bittorch/ops.h>

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

TernarizedWeight ternarize(const at::Tensor& weight, const TernarizeOptions& options) {
  auto [codes, scale] = ops::ternarize(weight, options.threshold_factor(), options.per_channel(),
                                       to_string(options.scale_mode()));
  return {std::move(codes), std::move(scale)};
}

}  // namespace bittorch::quant
