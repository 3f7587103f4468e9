#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/quant/activations.h>

#include "nn/checked_load.h"

#include <torch/nn/init.h>

#include <cmath>

namespace bittorch::nn {
namespace {

// What TernaryLinear and TernaryLinearCUDA share; `Options` is either options type.

template <typename Options>
void check_options(const char* name, const Options& options) {
  TORCH_CHECK(options.in_features() >= 1 && options.out_features() >= 1, name,
              ": expected in_features and out_features >= 1, but got in_features = ",
              options.in_features(), " and out_features = ", options.out_features());
  TORCH_CHECK(options.threshold_factor() >= 0.0 && options.threshold_factor() <= 1.0, name,
              ": expected threshold_factor in [0, 1], but got ", options.threshold_factor());
  TORCH_CHECK(options.activation_bits() == 0 || options.activation_bits() == 8, name,
              ": expected activation_bits 0 (off) or 8, but got ", options.activation_bits());
}

template <typename Options>
void register_parameters(torch::nn::Module& module, const Options& options, at::Tensor& weight,
                         at::Tensor& bias) {
  weight = module.register_parameter(
      "weight", torch::empty({options.out_features(), options.in_features()}));
  bias = options.bias() ? module.register_parameter("bias", torch::empty(options.out_features()))
                        : module.register_parameter("bias", {}, /*requires_grad=*/false);
}

// Kaiming-uniform weight (a = sqrt(5)) and a bias uniform in +-1/sqrt(in_features).
void init_parameters(at::Tensor& weight, at::Tensor& bias, int64_t in_features) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias.uniform_(-bound, bound);
  }
}

template <typename Options>
void print_options(std::ostream& stream, const char* name, const Options& options) {
  stream << std::boolalpha << name << "(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias()
         << ", scale_mode=" << quant::to_string(options.scale_mode())
         << ", threshold_factor=" << options.threshold_factor()
         << ", per_channel=" << options.per_channel() << ", quantize=" << options.quantize()
         << ", activation_bits=" << options.activation_bits() << ")";
}

quant::TernarizedWeight quantized(const at::Tensor& weight,
                                  const functional::TernaryLinearFuncOptions& options) {
  return quant::ternarize(weight.detach(), options.ternarize_options());
}

}  // namespace

TernaryLinearImpl::TernaryLinearImpl(const TernaryLinearOptions& options_) : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

void TernaryLinearImpl::reset() {
  check_options("bittorch::nn::TernaryLinear", options);
  register_parameters(*this, options, weight, bias);
  reset_parameters();
}

void TernaryLinearImpl::reset_parameters() { init_parameters(weight, bias, options.in_features()); }

void TernaryLinearImpl::pretty_print(std::ostream& stream) const {
  print_options(stream, "bittorch::nn::TernaryLinear", options);
}

at::Tensor TernaryLinearImpl::forward(const at::Tensor& input) {
  return functional::ternary_linear(input, weight, bias, options);
}

quant::TernarizedWeight TernaryLinearImpl::get_quantized_weight() const {
  return quantized(weight, options);
}

void TernaryLinearImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, "bittorch::nn::TernaryLinear");
}

TernaryLinearCUDAImpl::TernaryLinearCUDAImpl(const TernaryLinearCUDAOptions& options_)
    : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

void TernaryLinearCUDAImpl::reset() {
  check_options("bittorch::nn::TernaryLinearCUDA", options);
  register_parameters(*this, options, weight, bias);
  reset_parameters();
}

void TernaryLinearCUDAImpl::reset_parameters() {
  init_parameters(weight, bias, options.in_features());
}

void TernaryLinearCUDAImpl::pretty_print(std::ostream& stream) const {
  print_options(stream, "bittorch::nn::TernaryLinearCUDA", options);
}

at::Tensor TernaryLinearCUDAImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.is_cuda() && weight.is_cuda(),
              "bittorch::nn::TernaryLinearCUDA: expected the input and the module on a CUDA "
              "device, but got input on ", input.device(), " and weight on ", weight.device(),
              "; move both with .to(torch::kCUDA), or use bittorch::nn::TernaryLinear on the CPU");
  return functional::ternary_linear(input, weight, bias, options);
}

quant::TernarizedWeight TernaryLinearCUDAImpl::get_quantized_weight() const {
  return quantized(weight, options);
}

void TernaryLinearCUDAImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, "bittorch::nn::TernaryLinearCUDA");
}

}  // namespace bittorch::nn
