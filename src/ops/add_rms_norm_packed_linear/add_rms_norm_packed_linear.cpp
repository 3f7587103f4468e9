// bittorch::add_rms_norm_packed_linear: schema, typed entry and argument checks.

#include "ops/add_rms_norm_packed_linear/add_rms_norm_packed_linear.h"

#include <bittorch/ops/add_rms_norm_packed_linear.h>

#include "ops/add_rms_norm/add_rms_norm.h"
#include "ops/common/checks.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // (normed, sum) = add_rms_norm(input, residual, norm_weight, eps), then
  // output = packed_ternary_linear(normed, ...): returns (output, sum). Not differentiable.
  m.def(
      "add_rms_norm_packed_linear(Tensor input, Tensor residual, Tensor norm_weight, float eps, Tensor packed, "
      "Tensor scale, Tensor? bias, int in_features, str activation_format=\"none\", str epilogue=\"none\") -> "
      "(Tensor output, Tensor sum)");
}

namespace bittorch::ops {

std::tuple<at::Tensor, at::Tensor> add_rms_norm_packed_linear(const at::Tensor& input, const at::Tensor& residual,
                                                              const at::Tensor& norm_weight, double eps,
                                                              const at::Tensor& packed, const at::Tensor& scale,
                                                              const std::optional<at::Tensor>& bias,
                                                              int64_t in_features, c10::string_view activation_format,
                                                              c10::string_view epilogue) {
  static const auto op = find_op<decltype(add_rms_norm_packed_linear)>("bittorch::add_rms_norm_packed_linear");
  return op.call(input, residual, norm_weight, eps, packed, scale, bias, in_features, activation_format, epilogue);
}

void check_add_rms_norm_packed_linear_args(const char* op, const at::Tensor& input, const at::Tensor& residual,
                                           const at::Tensor& norm_weight, double eps, const at::Tensor& packed,
                                           const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                           int64_t in_features, c10::string_view activation_format,
                                           c10::string_view epilogue) {
  check_input(op, input);
  TORCH_CHECK(residual.defined() && residual.sizes() == input.sizes() && residual.scalar_type() == input.scalar_type(),
              op, ": expected a residual of the input's shape ", input.sizes(), " and dtype ", input.scalar_type(),
              ", but got ", residual.defined() ? residual.sizes() : at::IntArrayRef{}, " ",
              residual.defined() ? residual.scalar_type() : input.scalar_type());
  check_add_rms_norm_args(op, input, residual, norm_weight, eps, std::nullopt);
  check_packed_linear_args(op, input, packed, scale, bias, in_features, activation_format, "auto");
  parse_packed_epilogue(op, epilogue);
}

}  // namespace bittorch::ops
