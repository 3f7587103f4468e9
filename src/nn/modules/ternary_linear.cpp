#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include "nn/checked_load.h"

#include <torch/nn/init.h>

#include <cmath>

namespace bittorch::nn {
namespace {

const char* module_name(const TernaryLinearOptions& options) {
  return options.cuda_only() ? "bittorch::nn::TernaryLinearCUDA" : "bittorch::nn::TernaryLinear";
}

// Whether two layers' options give the same computation for their shapes.
bool computes_alike(const TernaryLinearOptions& a, const TernaryLinearOptions& b) {
  return a.bias() == b.bias() && a.quant() == b.quant() && a.quantize() == b.quantize() && a.fused() == b.fused() &&
         a.cuda_only() == b.cuda_only() && a.keep_quantized_weight() == b.keep_quantized_weight();
}

}  // namespace

TernaryLinearImpl::TernaryLinearImpl(const TernaryLinearOptions& options_) : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

void TernaryLinearImpl::reset() {
  const char* name = module_name(options);
  TORCH_CHECK(options.in_features() >= 1 && options.out_features() >= 1, name,
              ": expected in_features and out_features >= 1, but got in_features = ", options.in_features(),
              " and out_features = ", options.out_features());
  quant::check_quant_config(options.quant(), name);
  weight = register_parameter("weight", torch::empty({options.out_features(), options.in_features()}));
  bias = options.bias() ? register_parameter("bias", torch::empty(options.out_features()))
                        : register_parameter("bias", {}, /*requires_grad=*/false);
  reset_parameters();
}

void TernaryLinearImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
    bias.uniform_(-bound, bound);
  }
}

void TernaryLinearImpl::pretty_print(std::ostream& stream) const {
  const auto flags = stream.flags();
  stream << std::boolalpha << module_name(options) << "(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias() << ", " << options.quant()
         << ", quantize=" << options.quantize() << ")";
  stream.flags(flags);
}

void TernaryLinearImpl::check_placement(const at::Tensor& input) const {
  TORCH_CHECK(!options.cuda_only() || (input.is_cuda() && weight.is_cuda()), module_name(options),
              ": expected the input and the module on a CUDA device, but got input on ", input.device(),
              " and weight on ", weight.device(),
              "; move both with .to(torch::kCUDA), or use bittorch::nn::TernaryLinear on the CPU");
}

at::Tensor TernaryLinearImpl::forward(const at::Tensor& input) {
  check_placement(input);
  return functional::ternary_linear(input, weight, bias, options,
                                    options.keep_quantized_weight() ? &quantized_weight_ : nullptr);
}

std::optional<at::Tensor> TernaryLinearImpl::forward_joined(const std::vector<TernaryLinearImpl*>& layers,
                                                            const at::Tensor& input) {
  if (layers.size() < 2 || !functional::joinable_ternary_linear(layers.front()->options)) return std::nullopt;
  const auto& first = layers.front()->options;
  std::vector<at::Tensor> weights, biases;
  std::vector<QuantizedWeightCache*> caches;
  for (auto* layer : layers) {
    const auto& options = layer->options;
    if (options.in_features() != first.in_features() || !computes_alike(options, first)) return std::nullopt;
    layer->check_placement(input);
    weights.push_back(layer->weight);
    if (options.bias()) biases.push_back(layer->bias);
    caches.push_back(options.keep_quantized_weight() ? &layer->quantized_weight_ : nullptr);
  }
  return functional::stacked_ternary_linear(input, weights, biases, first, caches);
}

std::optional<at::Tensor> TernaryLinearImpl::forward_squared_relu_mlp(TernaryLinearImpl& up, TernaryLinearImpl& down,
                                                                      const at::Tensor& input) {
  if (up.options.bias() || !computes_alike(up.options, down.options)) return std::nullopt;
  up.check_placement(input);
  down.check_placement(input);
  const bool keep = up.options.keep_quantized_weight();
  return functional::ternary_squared_relu_mlp(input, up.weight, down.weight, up.options,
                                              keep ? &up.quantized_weight_ : nullptr,
                                              keep ? &down.quantized_weight_ : nullptr);
}

quant::TernarizedWeight TernaryLinearImpl::get_quantized_weight() const {
  return functional::ternarize(weight.detach(), options.quant());
}

void TernaryLinearImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, module_name(options));
}

}  // namespace bittorch::nn
