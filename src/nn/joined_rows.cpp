#include "nn/joined_rows.h"

#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

namespace bittorch::nn::detail {
namespace {

template <typename Layer>
Layer* as(const torch::nn::AnyModule& module) {
  return dynamic_cast<Layer*>(module.ptr().get());
}

// The tensors a layer's rows are made of, in one order for every layer of its kind: the weight
// (packed codes, or the matrix), the scale (packed layers), the bias if any. Empty for a layer
// of another kind.
std::vector<at::Tensor*> row_tensors(const torch::nn::AnyModule& layer) {
  std::vector<at::Tensor*> tensors;
  if (auto* packed = as<PackedTernaryLinearImpl>(layer)) {
    tensors = {&packed->packed, &packed->scale};
    if (packed->bias.defined()) tensors.push_back(&packed->bias);
  } else if (auto* linear = as<torch::nn::LinearImpl>(layer)) {
    tensors = {&linear->weight};
    if (linear->bias.defined()) tensors.push_back(&linear->bias);
  }
  return tensors;
}

// The parts as torch::nn::Linear layers alike (one in_features, all with a bias or none, one
// dtype and device), or empty when they are not.
std::vector<const torch::nn::LinearImpl*> alike_linears(const std::vector<torch::nn::AnyModule>& parts) {
  std::vector<const torch::nn::LinearImpl*> linears;
  const auto* first = as<torch::nn::LinearImpl>(parts.front());
  for (const auto& part : parts) {
    const auto* linear = as<torch::nn::LinearImpl>(part);
    if (linear == nullptr || linear->options.in_features() != first->options.in_features() ||
        linear->bias.defined() != first->bias.defined() || linear->weight.device() != first->weight.device() ||
        linear->weight.scalar_type() != first->weight.scalar_type()) {
      return {};
    }
    linears.push_back(linear);
  }
  return linears;
}

// An empty layer of the parts' kind for `rows` outputs, on their device; nullopt when the parts
// are not alike.
std::optional<torch::nn::AnyModule> empty_joined_layer(const std::vector<torch::nn::AnyModule>& parts, int64_t rows) {
  if (const auto* packed = as<PackedTernaryLinearImpl>(parts.front())) {
    for (const auto& part : parts) {
      const auto* other = as<PackedTernaryLinearImpl>(part);
      if (other == nullptr || other->options.in_features() != packed->options.in_features() ||
          other->options.bias() != packed->options.bias() || !(other->options.quant() == packed->options.quant())) {
        return std::nullopt;
      }
    }
    PackedTernaryLinear joined(PackedTernaryLinearOptions(packed->options.in_features(), rows)
                                   .bias(packed->options.bias())
                                   .quant(packed->options.quant()));
    joined->to(packed->packed.device());
    return torch::nn::AnyModule(joined);
  }
  if (const auto linears = alike_linears(parts); !linears.empty()) {
    const auto* linear = linears.front();
    torch::nn::Linear joined(
        torch::nn::LinearOptions(linear->options.in_features(), rows).bias(linear->bias.defined()));
    joined->to(linear->weight.device(), linear->weight.scalar_type());
    return torch::nn::AnyModule(joined);
  }
  return std::nullopt;
}

}  // namespace

std::vector<int64_t> output_widths(const std::vector<torch::nn::AnyModule>& parts) {
  std::vector<int64_t> widths;
  for (const auto& part : parts) {
    if (const auto* packed = as<PackedTernaryLinearImpl>(part)) {
      widths.push_back(packed->options.out_features());
    } else if (const auto* ternary = as<TernaryLinearImpl>(part)) {
      widths.push_back(ternary->options.out_features());
    } else if (const auto* linear = as<torch::nn::LinearImpl>(part)) {
      widths.push_back(linear->options.out_features());
    } else {
      TORCH_CHECK(false, "bittorch: a projection of type ", part.ptr()->name(),
                  " in a group: expected torch::nn::Linear, TernaryLinear or PackedTernaryLinear");
    }
  }
  return widths;
}

std::optional<torch::nn::AnyModule> join_rows(const std::vector<torch::nn::AnyModule>& parts) {
  if (parts.size() < 2) return std::nullopt;
  int64_t rows = 0;
  for (const auto& part : parts) {
    const auto tensors = row_tensors(part);
    if (tensors.empty() || tensors.front()->device() != row_tensors(parts.front()).front()->device()) {
      return std::nullopt;
    }
    rows += tensors.front()->size(0);
  }
  auto joined = empty_joined_layer(parts, rows);
  if (!joined) return std::nullopt;
  const torch::NoGradGuard no_grad;
  const auto whole = row_tensors(*joined);
  for (size_t slot = 0; slot < whole.size(); ++slot) {
    std::vector<at::Tensor> pieces;
    for (const auto& part : parts) pieces.push_back(*row_tensors(part)[slot]);
    whole[slot]->copy_(at::cat(pieces));
    // Each part's tensor now views its rows of the joined one: the weights are held once.
    const int64_t row_elements = whole[slot]->dim() > 1 ? whole[slot]->stride(0) : 1;
    int64_t offset = 0;
    for (const auto& part : parts) {
      at::Tensor& tensor = *row_tensors(part)[slot];
      const auto sizes = tensor.sizes().vec();
      // The joined tensor's strides: the parts' rows are as long as its.
      tensor.set_(whole[slot]->storage(), offset * row_elements, sizes, whole[slot]->strides());
      offset += sizes.front();
    }
  }
  return joined;
}

std::optional<at::Tensor> joined_output(const std::vector<torch::nn::AnyModule>& parts, const at::Tensor& x) {
  if (parts.size() < 2) return std::nullopt;
  if (as<TernaryLinearImpl>(parts.front()) != nullptr) {
    std::vector<TernaryLinearImpl*> layers;
    for (const auto& part : parts) {
      auto* layer = as<TernaryLinearImpl>(part);
      if (layer == nullptr) return std::nullopt;
      layers.push_back(layer);
    }
    return TernaryLinearImpl::forward_joined(layers, x);
  }
  const auto linears = alike_linears(parts);
  if (linears.empty()) return std::nullopt;
  std::vector<at::Tensor> weights, biases;
  for (const auto* linear : linears) {
    weights.push_back(linear->weight);
    if (linear->bias.defined()) biases.push_back(linear->bias);
  }
  // at::cat's backward hands each weight its rows of the one gradient.
  return at::linear(x, at::cat(weights), biases.empty() ? at::Tensor() : at::cat(biases));
}

bool still_joined(const torch::nn::AnyModule& joined, const std::vector<torch::nn::AnyModule>& parts) {
  const auto whole = row_tensors(joined);
  for (const auto& part : parts) {
    const auto tensors = row_tensors(part);
    if (tensors.size() != whole.size()) return false;
    for (size_t slot = 0; slot < whole.size(); ++slot) {
      if (!tensors[slot]->defined() || !tensors[slot]->storage().is_alias_of(whole[slot]->storage())) return false;
    }
  }
  return true;
}

}  // namespace bittorch::nn::detail
