#include "ops/common/checks.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor packed_ternary_linear_meta(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& scale,
                                      const std::optional<at::Tensor>& bias, int64_t in_features,
                                      c10::string_view activation_format, c10::string_view kernel,
                                      c10::string_view epilogue) {
  check_packed_linear_args("bittorch::packed_ternary_linear", input, packed, scale, bias, in_features,
                           activation_format, kernel);
  parse_packed_epilogue("bittorch::packed_ternary_linear", epilogue);
  return at::empty(linear_output_shape(input, packed.size(0)), input.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_meta);
}

}  // namespace bittorch::ops
