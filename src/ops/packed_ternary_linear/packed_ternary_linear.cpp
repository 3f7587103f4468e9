// bittorch::packed_ternary_linear: schema, typed entry and argument checks.

#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <bittorch/ops/packed_ternary_linear.h>
#include <bittorch/quant/packing.h>

#include "ops/common/checks.h"

#include <c10/util/StringUtil.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <string_view>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // Inference on packed weights (docs/packed-format.md): y = (x @ codes^T) * scale + bias
  // with codes unpacked from `packed` (int32 [out, ceil(in_features / 16)]), scale float32
  // [out] or [1]; activation_format as for ternary_linear; `kernel` a variant name for tests
  // and benchmarks ("auto": the heuristics); `epilogue` "none" or "squared_relu" (each output
  // y becomes max(y, 0)^2 before it is rounded to the output dtype). Not differentiable.
  m.def(
      "packed_ternary_linear(Tensor input, Tensor packed, Tensor scale, Tensor? bias, "
      "int in_features, str activation_format=\"none\", str kernel=\"auto\", str epilogue=\"none\") -> Tensor");
}

namespace bittorch::ops {

at::Tensor packed_ternary_linear(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& scale,
                                 const std::optional<at::Tensor>& bias, int64_t in_features,
                                 c10::string_view activation_format, c10::string_view kernel,
                                 c10::string_view epilogue) {
  static const auto op = find_op<decltype(packed_ternary_linear)>("bittorch::packed_ternary_linear");
  return op.call(input, packed, scale, bias, in_features, activation_format, kernel, epilogue);
}

namespace {

// The CUDA variants: src/ops/packed_ternary_linear/cuda/ (one file per family); wgmma where
// CUTLASS's headers were found. Views of literals, so that checking a call's kernel name
// allocates nothing.
#ifdef BITTORCH_WITH_CUTLASS
constexpr std::array<std::string_view, 8> kCudaKernels = {"auto",   "gemv",  "mma",   "split_k",
                                                          "stream", "tiled", "wgmma", "expand"};
#else
constexpr std::array<std::string_view, 7> kCudaKernels = {"auto",   "gemv",  "mma",   "split_k",
                                                          "stream", "tiled", "expand"};
#endif
constexpr std::array<std::string_view, 1> kCpuKernels = {"auto"};

c10::ArrayRef<std::string_view> kernel_names(c10::DeviceType device) {
  if (device == c10::DeviceType::CUDA) return kCudaKernels;
  return kCpuKernels;
}

}  // namespace

std::vector<std::string> packed_kernel_names(c10::DeviceType device) {
  const auto names = kernel_names(device);
  return std::vector<std::string>(names.begin(), names.end());
}

quant::ActivationFormat check_packed_linear_args(const char* op, const at::Tensor& input, const at::Tensor& packed,
                                                 const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                                 int64_t in_features, c10::string_view activation_format,
                                                 c10::string_view kernel) {
  check_input(op, input);
  check_quantizable_input(op, input);
  TORCH_CHECK(in_features >= 1 && input.size(-1) == in_features, op,
              ": expected input's last dimension to be in_features = ", in_features, ", but got input of shape ",
              input.sizes());
  const int64_t words = quant::packed_words(in_features);
  TORCH_CHECK(packed.defined() && packed.dim() == 2 && packed.scalar_type() == at::kInt && packed.size(0) >= 1 &&
                  packed.size(1) == words,
              op, ": expected packed int32 codes [out_features, ", words, "], but got ",
              packed.defined() ? packed.sizes() : c10::IntArrayRef{}, " ",
              packed.defined() ? packed.scalar_type() : at::kInt);
  const int64_t out_features = packed.size(0);
  TORCH_CHECK(scale.defined() && scale.dim() == 1 && scale.scalar_type() == at::kFloat &&
                  (scale.size(0) == out_features || scale.size(0) == 1),
              op, ": expected a float32 scale of shape [", out_features, "] or [1]");
  TORCH_CHECK(packed.device() == input.device() && scale.device() == input.device(), op,
              ": expected input, packed codes and scale on one device, but got ", input.device(), ", ", packed.device(),
              " and ", scale.device());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out_features && bias->device() == input.device() &&
                    bias->scalar_type() == input.scalar_type(),
                op, ": expected bias [", out_features, "] on ", input.device(), " with dtype ", input.scalar_type(),
                ", but got ", bias->sizes(), " on ", bias->device(), " with ", bias->scalar_type());
  }
  const auto names = kernel_names(input.device().type());
  TORCH_CHECK(std::find(names.begin(), names.end(), std::string_view(kernel.data(), kernel.size())) != names.end(), op,
              ": unknown kernel \"", kernel, "\" on ", input.device().type(), " (known: ", c10::Join(", ", names), ")");
  return parse_activation_format(activation_format);
}

PackedEpilogue parse_packed_epilogue(const char* op, c10::string_view epilogue) {
  const std::string_view name(epilogue.data(), epilogue.size());
  if (name == "none") return PackedEpilogue::None;
  TORCH_CHECK(name == "squared_relu", op, ": unknown epilogue \"", name, "\" (known: none, squared_relu)");
  return PackedEpilogue::SquaredReLU;
}

}  // namespace bittorch::ops
