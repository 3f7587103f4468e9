// bittorch::ternarize: schema, typed entry and argument checks.

#include "ops/ternarize/ternarize.h"

#include <bittorch/ops/ternarize.h>
#include <bittorch/quant/config.h>

#include "ops/common/checks.h"

#include <ATen/ATen.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // Ternary codes {-1, 0, 1} in the weight's dtype and the per-channel ([out]) or global
  // ([1]) scale. Not differentiable.
  m.def(
      "ternarize(Tensor weight, float threshold_factor=0.05, bool per_channel=True, "
      "str scale_mode=\"max\") -> (Tensor codes, Tensor scale)");
}

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> ternarize(const at::Tensor& weight, double threshold_factor, bool per_channel,
                                             c10::string_view scale_mode) {
  static const auto op = find_op<decltype(ternarize)>("bittorch::ternarize");
  return op.call(weight, threshold_factor, per_channel, scale_mode);
}

quant::ScaleMode check_ternarize_args(const char* op, const at::Tensor& weight, double threshold_factor,
                                      c10::string_view scale_mode) {
  check_floating(op, "weight", weight);
  TORCH_CHECK(weight.dim() == 2, op, ": expected weight to be 2-D [out_features, in_features], but got a ",
              weight.dim(), "-D tensor of shape ", weight.sizes());
  TORCH_CHECK(weight.size(0) >= 1 && weight.size(1) >= 1, op,
              ": expected a weight with at least one row and one column, but got shape ", weight.sizes());
  const auto mode = quant::scale_mode_from_string(std::string_view(scale_mode.data(), scale_mode.size()));
  quant::check_quant_config(quant::QuantConfig().scale_mode(mode).threshold_factor(threshold_factor), op);
  return mode;
}

at::Tensor empty_scale(const at::Tensor& weight, bool per_channel) {
  return at::empty({per_channel ? weight.size(0) : 1}, weight.options().dtype(scale_dtype(weight.scalar_type())));
}

}  // namespace bittorch::ops
