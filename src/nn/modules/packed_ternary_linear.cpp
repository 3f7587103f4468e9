#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/ops/add_rms_norm_packed_linear.h>
#include <bittorch/ops/packed_ternary_linear.h>
#include <bittorch/ops/quantize_activations.h>
#include <bittorch/quant/packing.h>

#include "nn/captured_step.h"
#include "nn/checked_load.h"

namespace bittorch::nn {

PackedTernaryLinearImpl::PackedTernaryLinearImpl(const PackedTernaryLinearOptions& options_) : options(options_) {
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall)
  reset();
}

PackedTernaryLinearImpl::PackedTernaryLinearImpl(const TernaryLinearImpl& layer)
    : PackedTernaryLinearImpl(PackedTernaryLinearOptions(layer.options.in_features(), layer.options.out_features())
                                  .bias(layer.options.bias())
                                  .quant(layer.options.quant())) {
  TORCH_CHECK(layer.options.quantize(),
              "bittorch::nn::PackedTernaryLinear: the layer has quantize(false) and no ternary weights");
  torch::NoGradGuard no_grad;
  const auto q = layer.get_quantized_weight();
  packed.copy_(quant::pack_ternary(q.codes));
  scale.copy_(q.scale.to(at::kFloat).expand({options.out_features()}));
  if (bias.defined()) bias.copy_(layer.bias);
}

void PackedTernaryLinearImpl::reset() {
  const char* name = "bittorch::nn::PackedTernaryLinear";
  TORCH_CHECK(options.in_features() >= 1 && options.out_features() >= 1, name,
              ": expected in_features and out_features >= 1, but got ", options.in_features(), " and ",
              options.out_features());
  quant::check_quant_config(options.quant(), name);
  packed = register_buffer(
      "packed", torch::zeros({options.out_features(), quant::packed_words(options.in_features())}, torch::kInt));
  scale = register_buffer("scale", torch::ones({options.out_features()}));
  bias = options.bias() ? register_buffer("bias", torch::zeros({options.out_features()})) : at::Tensor();
}

void PackedTernaryLinearImpl::pretty_print(std::ostream& stream) const {
  const auto flags = stream.flags();
  stream << std::boolalpha << "bittorch::nn::PackedTernaryLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << options.bias() << ", " << options.quant()
         << ")";
  stream.flags(flags);
}

at::Tensor PackedTernaryLinearImpl::forward(const at::Tensor& input) {
  return compute(input, "none");
}

at::Tensor PackedTernaryLinearImpl::forward_squared_relu(const at::Tensor& input) {
  return compute(input, "squared_relu");
}

std::tuple<at::Tensor, at::Tensor> PackedTernaryLinearImpl::forward_after_norm(const at::Tensor& input,
                                                                               const at::Tensor& residual,
                                                                               const at::Tensor& norm_weight,
                                                                               double eps, bool squared_relu) {
  return ops::add_rms_norm_packed_linear(input, residual, norm_weight, eps, packed, scale, bias_for(input),
                                         options.in_features(), activation_format_for(input),
                                         squared_relu ? "squared_relu" : "none");
}

at::Tensor PackedTernaryLinearImpl::compute(const at::Tensor& input, c10::string_view epilogue) {
  return ops::packed_ternary_linear(input, packed, scale, bias_for(input), options.in_features(),
                                    activation_format_for(input), "auto", epilogue);
}

std::optional<at::Tensor> PackedTernaryLinearImpl::bias_for(const at::Tensor& input) const {
  if (!bias.defined()) return std::nullopt;
  // An inference tensor has no version counter: converted in every call.
  if (input.scalar_type() == bias.scalar_type() || bias.is_inference()) return bias.to(input.scalar_type());
  const std::lock_guard<std::mutex> lock(converted_bias_.mutex);
  auto& cached = converted_bias_;
  if (cached.converted.defined() && cached.source.is_same(bias) && cached.source_version == bias._version() &&
      cached.converted.scalar_type() == input.scalar_type()) {
    return cached.converted;
  }
  at::Tensor converted = bias.to(input.scalar_type());
  // Inside a CUDA graph's capture the cast runs only at replay: not kept for eager calls.
  if (!detail::stream_is_capturing(bias.device())) {
    cached.source = bias;
    cached.source_version = bias._version();
    cached.converted = converted;
  }
  return converted;
}

PackedTernaryLinearImpl::ConvertedBias& PackedTernaryLinearImpl::ConvertedBias::operator=(
    const ConvertedBias& /*other*/) {
  const std::lock_guard<std::mutex> lock(mutex);
  source = converted = at::Tensor();
  return *this;
}

std::string PackedTernaryLinearImpl::activation_format_for(const at::Tensor& input) const {
  return quant::to_string(ops::activation_format_for(options.quant().activation_bits(), input.device()));
}

void PackedTernaryLinearImpl::to(torch::Device device, torch::Dtype /*dtype*/, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
}

void PackedTernaryLinearImpl::to(torch::Dtype /*dtype*/, bool /*non_blocking*/) {}

int64_t PackedTernaryLinearImpl::weight_bytes() const {
  return packed.numel() * packed.element_size() + scale.numel() * scale.element_size();
}

void PackedTernaryLinearImpl::load(torch::serialize::InputArchive& archive) {
  load_checking_shapes(*this, archive, "bittorch::nn::PackedTernaryLinear");
}

PackedTernaryLinear pack_layer(const TernaryLinearImpl& layer, const std::string& path, const char* caller) {
  try {
    PackedTernaryLinear packed(layer);
    packed->to(layer.weight.device());
    return packed;
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, caller, ": layer '", path, "': ", error.what_without_backtrace());
  }
}

}  // namespace bittorch::nn
