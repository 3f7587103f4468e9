#pragma once

// Whole models: swapping layers anywhere in a module tree.
//
// LibTorch modules call their layers through member holders, which a registry swap cannot
// reach; so a layer is replaced in place only where its parent lets it be: a
// torch::nn::Sequential (order and names kept), and modules of your own that implement
// ReplaceableChildren (typically holding the layer in a torch::nn::AnyModule
// member). Anywhere else a replacement is a c10::Error naming the layer, never a silent no-op.

#include <bittorch/export.h>
#include <bittorch/quant/config.h>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bittorch::nn {

/// For modules of your own whose layers convert_to_ternary and pack may swap.
class BITTORCH_API ReplaceableChildren {
 public:
  virtual ~ReplaceableChildren() = default;
  /// Make `module` child `name` in place of the current one: re-register it
  /// (Module::replace_module) and re-point the member that forward calls.
  virtual void replace_child(const std::string& name, const torch::nn::AnyModule& module) = 0;
};

/// Replaces child `name` of `parent` by `module` (see the top of this file); `path` names the
/// child in errors.
BITTORCH_API void replace_child(torch::nn::Module& parent, const std::string& name, const torch::nn::AnyModule& module,
                                const std::string& path);

/// Which Linear layers convert_to_ternary converts: given the layer's dotted path in the tree
/// ("encoder.0.fc1") and the layer.
using LinearFilter = std::function<bool(const std::string& path, const torch::nn::LinearImpl& layer)>;

/// Replaces every torch::nn::Linear under `model` (at any depth; those `filter` accepts, all
/// without one) by a TernaryLinear with a copy of its weight and bias (same device and dtype)
/// and quantization `config`, as torchao's quantize_ does for Python models. Returns how many
/// layers it converted. The optimizer of a converted model must be built afterwards.
BITTORCH_API int64_t convert_to_ternary(torch::nn::Module& model, const quant::QuantConfig& config = {},
                                        const LinearFilter& filter = nullptr);

/// Replaces every TernaryLinear under `model` (at any depth) by a PackedTernaryLinear on the
/// layer's device, in place; returns how many. A layer whose weight holds NaN or Inf is a
/// c10::Error naming it.
BITTORCH_API int64_t pack(torch::nn::Module& model);

/// A packed copy of `model` (pack on a clone); `model` is left as it was.
BITTORCH_API torch::nn::Sequential pack(const torch::nn::Sequential& model);

}  // namespace bittorch::nn

namespace bittorch {
using nn::pack;
}  // namespace bittorch
