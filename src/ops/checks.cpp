#include "ops/checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace bittorch::ops {
namespace {

void check_floating(const char* op, const char* name, const at::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), op, ": expected ", name, " to be a tensor, but got an undefined one");
  TORCH_CHECK(at::isFloatingType(tensor.scalar_type()), op, ": expected ", name,
              " to be floating point (float32, float64, float16 or bfloat16), but got ",
              tensor.scalar_type());
}

thread_local bool autocast_master_weight = false;

void check_input(const char* op, const at::Tensor& input) {
  check_floating(op, "input", input);
  TORCH_CHECK(input.dim() >= 1, op, ": expected input of shape [*, in_features], but got a 0-D tensor");
}

quant::ActivationFormat parse_activation_format(c10::string_view format) {
  return quant::activation_format_from_string(std::string_view(format.data(), format.size()));
}

// 8-bit activations are quantized from float32 arithmetic: float64 inputs are refused
// rather than silently narrowed.
void check_quantizable_input(const char* op, const at::Tensor& input) {
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": 8-bit activations need a float32, float16 or bfloat16 input, but got ", dtype);
}

}  // namespace

AutocastMasterWeightScope::AutocastMasterWeightScope() : previous_(autocast_master_weight) {
  autocast_master_weight = true;
}

AutocastMasterWeightScope::~AutocastMasterWeightScope() { autocast_master_weight = previous_; }

at::ScalarType scale_dtype(at::ScalarType weight_dtype) {
  return at::isReducedFloatingType(weight_dtype) ? at::kFloat : weight_dtype;
}

quant::ScaleMode check_ternarize_args(const char* op, const at::Tensor& weight,
                                      double threshold_factor, c10::string_view scale_mode) {
  check_floating(op, "weight", weight);
  TORCH_CHECK(weight.dim() == 2, op,
              ": expected weight to be 2-D [out_features, in_features], but got a ", weight.dim(),
              "-D tensor of shape ", weight.sizes());
  TORCH_CHECK(weight.size(0) >= 1 && weight.size(1) >= 1, op,
              ": expected a weight with at least one row and one column, but got shape ",
              weight.sizes());
  TORCH_CHECK(threshold_factor >= 0.0 && threshold_factor <= 1.0, op,
              ": expected threshold_factor in [0, 1], but got ", threshold_factor);
  return quant::scale_mode_from_string(std::string_view(scale_mode.data(), scale_mode.size()));
}

quant::ActivationFormat check_activation_args(const char* op, const at::Tensor& input,
                                              c10::string_view format) {
  check_input(op, input);
  const auto parsed = parse_activation_format(format);
  TORCH_CHECK(parsed != quant::ActivationFormat::None, op,
              ": expected format \"int8\" or \"float8_e4m3\", but got \"none\"");
  TORCH_CHECK(input.size(-1) >= 1, op,
              ": expected an input with at least one feature (last dimension), but got shape ",
              input.sizes());
  check_quantizable_input(op, input);
  return parsed;
}

LinearArgs check_linear_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, double threshold_factor,
                             c10::string_view scale_mode, c10::string_view activation_format) {
  const auto mode = check_ternarize_args(op, weight, threshold_factor, scale_mode);
  check_input(op, input);
  const auto format = parse_activation_format(activation_format);
  if (format != quant::ActivationFormat::None) check_quantizable_input(op, input);
  TORCH_CHECK(input.device() == weight.device(), op,
              ": expected input and weight on the same device, but got input on ", input.device(),
              " and weight on ", weight.device());
  const bool master_weight = autocast_master_weight && weight.scalar_type() == at::kFloat &&
                             at::isReducedFloatingType(input.scalar_type());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type() || master_weight, op,
              ": expected input and weight of the same dtype, but got input ", input.scalar_type(),
              " and weight ", weight.scalar_type());
  TORCH_CHECK(input.size(-1) == weight.size(1), op, ": expected input's last dimension to be ",
              "in_features = ", weight.size(1), ", but got input of shape ", input.sizes());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op,
                ": expected bias of shape [", weight.size(0), "] (out_features), but got ",
                bias->sizes());
    TORCH_CHECK(bias->device() == input.device() && bias->scalar_type() == input.scalar_type(),
                op, ": expected bias on ", input.device(), " with dtype ", input.scalar_type(),
                " like input, but got ", bias->device(), " and ", bias->scalar_type());
  }
  return {mode, format};
}

quant::ActivationFormat check_packed_linear_args(const char* op, const at::Tensor& input,
                                                 const at::Tensor& packed, const at::Tensor& scale,
                                                 const std::optional<at::Tensor>& bias,
                                                 int64_t in_features,
                                                 c10::string_view activation_format) {
  check_input(op, input);
  check_quantizable_input(op, input);
  TORCH_CHECK(in_features >= 1 && input.size(-1) == in_features, op,
              ": expected input's last dimension to be in_features = ", in_features,
              ", but got input of shape ", input.sizes());
  TORCH_CHECK(packed.defined() && packed.dim() == 2 && packed.scalar_type() == at::kInt &&
                  packed.size(0) >= 1 && packed.size(1) == (in_features + 15) / 16,
              op, ": expected packed int32 codes [out_features, ", (in_features + 15) / 16,
              "], but got ", packed.defined() ? packed.sizes() : c10::IntArrayRef{}, " ",
              packed.defined() ? packed.scalar_type() : at::kInt);
  const int64_t out_features = packed.size(0);
  TORCH_CHECK(scale.defined() && scale.dim() == 1 && scale.scalar_type() == at::kFloat &&
                  (scale.size(0) == out_features || scale.size(0) == 1),
              op, ": expected a float32 scale of shape [", out_features, "] or [1]");
  TORCH_CHECK(packed.device() == input.device() && scale.device() == input.device(), op,
              ": expected input, packed codes and scale on one device, but got ", input.device(),
              ", ", packed.device(), " and ", scale.device());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out_features &&
                    bias->device() == input.device() && bias->scalar_type() == input.scalar_type(),
                op, ": expected bias [", out_features, "] on ", input.device(), " with dtype ",
                input.scalar_type(), ", but got ", bias->sizes(), " on ", bias->device(), " with ",
                bias->scalar_type());
  }
  return parse_activation_format(activation_format);
}

void check_finite(const char* op, const char* name, const at::Tensor& tensor) {
  if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  const at::Tensor non_finite = at::isfinite(tensor).logical_not_().reshape({-1});
  const int64_t count = non_finite.sum().item<int64_t>();
  if (count == 0) return;
  int64_t flat = non_finite.nonzero()[0][0].item<int64_t>();
  const double value = tensor.reshape({-1})[flat].item<double>();
  std::vector<int64_t> index(static_cast<size_t>(tensor.dim()));
  for (int64_t d = tensor.dim() - 1; d >= 0; --d) {
    index[d] = flat % tensor.size(d);
    flat /= tensor.size(d);
  }
  TORCH_CHECK(false, op, ": the ", name, " holds ", count, " non-finite value", count == 1 ? "" : "s",
              " (the first, ", value, ", at ", c10::IntArrayRef(index), ")");
}

std::vector<int64_t> linear_output_shape(const at::Tensor& input, int64_t out_features) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = out_features;
  return shape;
}

}  // namespace bittorch::ops
