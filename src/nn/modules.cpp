#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <bittorch/ops/quantize_activations.h>
#include <bittorch/ops/ternary_linear.h>

#include "nn/checked_load.h"
#include "nn/kept_quantized_weight.h"

#include <ATen/autocast_mode.h>
#include <torch/nn/init.h>

#include <cmath>

namespace bittorch::nn {
namespace {

const char* module_name(const TernaryLinearOptions& options) {
  return options.cuda_only() ? "bittorch::nn::TernaryLinearCUDA" : "bittorch::nn::TernaryLinear";
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

at::Tensor TernaryLinearImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(!options.cuda_only() || (input.is_cuda() && weight.is_cuda()), module_name(options),
              ": expected the input and the module on a CUDA device, but got input on ", input.device(),
              " and weight on ", weight.device(),
              "; move both with .to(torch::kCUDA), or use bittorch::nn::TernaryLinear on the CPU");
  if (!options.keep_quantized_weight() || !KeepQuantizedWeights::active() || !options.quantize() ||
      !options.use_cuda_kernel()) {
    return functional::ternary_linear(input, weight, bias, options);
  }
  TORCH_CHECK(input.device() == weight.device(), module_name(options),
              ": expected input and weight on the same device, but got input on ", input.device(), " and weight on ",
              weight.device());
  // The ternary_linear op's input dtype: under CUDA autocast its autocast dtype.
  const bool autocast =
      input.is_cuda() && at::isFloatingType(input.scalar_type()) && at::autocast::is_autocast_enabled(at::kCUDA);
  const auto dtype = autocast ? at::autocast::get_autocast_dtype(at::kCUDA) : input.scalar_type();
  const auto format = ops::activation_format_for(options.quant().activation_bits(), input.device());
  // The 16-bit product multiplies the operand, and grad_input needs it.
  const bool need_operand =
      format == quant::ActivationFormat::None || (at::GradMode::is_enabled() && input.requires_grad());
  const bool kept = kept_ && kept_->weight_version == weight._version() &&
                    kept_->weight_data == weight.const_data_ptr() && kept_->device == weight.device() &&
                    kept_->dtype == dtype && kept_->format == format && (kept_->operand.defined() || !need_operand);
  if (!kept) {
    const auto& config = options.quant();
    torch::NoGradGuard no_grad;
    auto [operand, codes, scale] = ops::ternary_linear_quantize_weight(
        weight, config.threshold_factor(), config.per_channel(), quant::to_string(config.scale_mode()),
        quant::to_string(format), dtype, need_operand);
    // A new object, not an update: a clone of this module shares the old one.
    kept_ = std::make_shared<detail::KeptQuantizedWeight>(
        detail::KeptQuantizedWeight{weight._version(), weight.const_data_ptr(), weight.device(), dtype, format,
                                    std::move(operand), std::move(codes), std::move(scale)});
    detail::drop_when_scope_ends(kept_);
  }
  const auto optional = [](const at::Tensor& t) { return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt; };
  return ops::ternary_linear_quantized(input, weight, optional(kept_->operand), optional(kept_->codes), kept_->scale,
                                       optional(bias), quant::to_string(format),
                                       quant::to_string(functional::gradient_format_for(options.quant())));
}

quant::TernarizedWeight TernaryLinearImpl::get_quantized_weight() const {
  return functional::ternarize(weight.detach(), options.quant());
}

void TernaryLinearImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, module_name(options));
}

}  // namespace bittorch::nn
