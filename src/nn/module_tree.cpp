#include <bittorch/nn/module_tree.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <utility>
#include <vector>

namespace bittorch::nn {
namespace {

std::string child_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Calls replace(path, child) for every descendant of `module`, parents before children; a
// non-empty AnyModule returned replaces that child (whose own children are then not visited).
void replace_in_tree(torch::nn::Module& module, const std::string& prefix,
                     const std::function<torch::nn::AnyModule(const std::string&, torch::nn::Module&)>& replace) {
  for (const auto& item : module.named_children()) {
    const std::string path = child_path(prefix, item.key());
    const auto replacement = replace(path, *item.value());
    if (!replacement.is_empty()) {
      replace_child(module, item.key(), replacement, path);
    } else {
      replace_in_tree(*item.value(), path, replace);
    }
  }
}

// `sequential` with child `name` replaced by `module` and the others as they were: built anew
// and assigned over the original, so that every holder of the Sequential sees it.
void rebuild_with(torch::nn::SequentialImpl& sequential, const std::string& name, const torch::nn::AnyModule& module) {
  torch::nn::SequentialImpl rebuilt;
  const auto names = sequential.named_children().keys();
  size_t index = 0;
  for (const auto& child : sequential) {
    const std::string& key = names.at(index++);
    rebuilt.push_back(key, key == name ? module : child);
  }
  rebuilt.train(sequential.is_training());
  sequential = std::move(rebuilt);
}

}  // namespace

void replace_child(torch::nn::Module& parent, const std::string& name, const torch::nn::AnyModule& module,
                   const std::string& path) {
  if (auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(&parent)) {
    return rebuild_with(*sequential, name, module);
  }
  if (auto* replaceable = dynamic_cast<ReplaceableChildren*>(&parent)) {
    return replaceable->replace_child(name, module);
  }
  TORCH_CHECK(false, "bittorch: cannot replace layer '", path, "': its parent (", parent.name(),
              ") calls it through a member that only the parent can re-point; hold the layer in a "
              "torch::nn::Sequential, or implement bittorch::nn::ReplaceableChildren in ",
              parent.name());
}

int64_t convert_to_ternary(torch::nn::Module& model, const quant::QuantConfig& config, const LinearFilter& filter) {
  quant::check_quant_config(config, "bittorch::nn::convert_to_ternary");
  int64_t converted = 0;
  replace_in_tree(model, "", [&](const std::string& path, torch::nn::Module& child) {
    const auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&child);
    if (linear == nullptr || (filter && !filter(path, *linear))) return torch::nn::AnyModule();
    const auto& o = linear->options;
    TernaryLinear ternary(TernaryLinearOptions(o.in_features(), o.out_features()).bias(o.bias()).quant(config));
    ternary->to(linear->weight.device(), linear->weight.scalar_type());
    torch::NoGradGuard no_grad;
    ternary->weight.copy_(linear->weight);
    if (o.bias()) ternary->bias.copy_(linear->bias);
    ternary->train(linear->is_training());
    ++converted;
    return torch::nn::AnyModule(ternary);
  });
  return converted;
}

int64_t pack(torch::nn::Module& model) {
  int64_t packed = 0;
  replace_in_tree(model, "", [&](const std::string& path, torch::nn::Module& child) {
    const auto* layer = dynamic_cast<TernaryLinearImpl*>(&child);
    if (layer == nullptr) return torch::nn::AnyModule();
    ++packed;
    return torch::nn::AnyModule(pack_layer(*layer, path, "bittorch::nn::pack"));
  });
  return packed;
}

torch::nn::Sequential pack(const torch::nn::Sequential& model) {
  torch::nn::Sequential copy(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(model->clone()));
  pack(*copy);
  return copy;
}

}  // namespace bittorch::nn
