#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <torch/nn/init.h>

#include <cmath>

namespace bittorch::nn {

TernaryLinearImpl::TernaryLinearImpl(const TernaryLinearOptions& options_) : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

void TernaryLinearImpl::reset() {
  TORCH_CHECK(options.in_features() >= 1 && options.out_features() >= 1,
              "bittorch::nn::TernaryLinear: expected in_features and out_features >= 1, but got "
              "in_features = ", options.in_features(), " and out_features = ",
              options.out_features());
  TORCH_CHECK(options.threshold_factor() >= 0.0 && options.threshold_factor() <= 1.0,
              "bittorch::nn::TernaryLinear: expected threshold_factor in [0, 1], but got ",
              options.threshold_factor());
  weight = register_parameter("weight",
                              torch::empty({options.out_features(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty(options.out_features()));
  } else {
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  }
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
  stream << std::boolalpha << "bittorch::nn::TernaryLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias()
         << ", scale_mode=" << quant::to_string(options.scale_mode())
         << ", threshold_factor=" << options.threshold_factor()
         << ", per_channel=" << options.per_channel() << ", quantize=" << options.quantize()
         << ")";
}

at::Tensor TernaryLinearImpl::forward(const at::Tensor& input) {
  return functional::ternary_linear(input, weight, bias, options);
}

quant::TernarizedWeight TernaryLinearImpl::get_quantized_weight() const {
  return quant::ternarize(weight.detach(),
                         functional::TernaryLinearFuncOptions(options).ternarize_options());
}

}  // namespace bittorch::nn
