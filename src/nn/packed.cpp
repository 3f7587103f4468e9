#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/quant/activations.h>
#include <bittorch/quant/packing.h>

#include <bittorch/ops.h>

#include "nn/checked_load.h"
#include "nn/pack_layer.h"

#include <torch/nn/modules/container/any.h>

namespace bittorch::nn {

PackedTernaryLinearOptions::PackedTernaryLinearOptions(int64_t in_features, int64_t out_features)
    : in_features_(in_features), out_features_(out_features) {}

PackedTernaryLinearImpl::PackedTernaryLinearImpl(const PackedTernaryLinearOptions& options_)
    : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

PackedTernaryLinearImpl::PackedTernaryLinearImpl(const TernaryLinearImpl& layer)
    : PackedTernaryLinearImpl(PackedTernaryLinearOptions(layer.options.in_features(),
                                                         layer.options.out_features())
                                  .bias(layer.options.bias())
                                  .activation_bits(layer.options.activation_bits())) {
  TORCH_CHECK(layer.options.quantize(),
              "bittorch::nn::PackedTernaryLinear: the layer has quantize(false) and no ternary weights");
  torch::NoGradGuard no_grad;
  const auto q = layer.get_quantized_weight();
  packed.copy_(quant::pack_ternary(q.codes));
  scale.copy_(q.scale.to(at::kFloat).expand({options.out_features()}));
  if (bias.defined()) bias.copy_(layer.bias);
}

void PackedTernaryLinearImpl::reset() {
  TORCH_CHECK(options.in_features() >= 1 && options.out_features() >= 1,
              "bittorch::nn::PackedTernaryLinear: expected in_features and out_features >= 1, but got ",
              options.in_features(), " and ", options.out_features());
  TORCH_CHECK(options.activation_bits() == 0 || options.activation_bits() == 8,
              "bittorch::nn::PackedTernaryLinear: expected activation_bits 0 (off) or 8, but got ",
              options.activation_bits());
  packed = register_buffer("packed", torch::zeros({options.out_features(), quant::packed_words(options.in_features())}, torch::kInt));
  scale = register_buffer("scale", torch::ones({options.out_features()}));
  bias = options.bias() ? register_buffer("bias", torch::zeros({options.out_features()})) : at::Tensor();
}

void PackedTernaryLinearImpl::pretty_print(std::ostream& stream) const {
  stream << std::boolalpha << "bittorch::nn::PackedTernaryLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias()
         << ", activation_bits=" << options.activation_bits() << ")";
}

at::Tensor PackedTernaryLinearImpl::forward(const at::Tensor& input) {
  const auto format = quant::activation_format_for(options.activation_bits(), input.device());
  return ops::packed_ternary_linear(
      input, packed, scale,
      bias.defined() ? std::optional<at::Tensor>(bias.to(input.scalar_type())) : std::nullopt,
      options.in_features(), quant::to_string(format));
}

int64_t PackedTernaryLinearImpl::weight_bytes() const {
  return packed.numel() * packed.element_size() + scale.numel() * scale.element_size();
}

void PackedTernaryLinearImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, "bittorch::nn::PackedTernaryLinear");
}

PackedTernaryLinear pack_layer(const TernaryLinearImpl& layer, const std::string& name, const char* caller) {
  try {
    PackedTernaryLinear packed(layer);
    packed->to(layer.weight.device());
    return packed;
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, caller, ": layer '", name, "': ", error.what_without_backtrace());
  }
}

}  // namespace bittorch::nn

namespace bittorch {

torch::nn::Sequential pack(const torch::nn::Sequential& model) {
  torch::nn::Sequential packed;
  const auto names = model->named_children().keys();
  size_t index = 0;
  for (const auto& any : *model) {
    const auto& name = names.at(index++);
    const auto module = any.ptr();
    if (const auto layer = std::dynamic_pointer_cast<nn::TernaryLinearImpl>(module)) {
      packed->push_back(std::string(name), nn::pack_layer(*layer, name, "bittorch::pack").ptr());
    } else {
      packed->push_back(std::string(name), any.clone());
    }
  }
  return packed;
}

}  // namespace bittorch
