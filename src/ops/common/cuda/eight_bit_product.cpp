// FP8 e4m3 codes times FP8 activations through at::_scaled_mm, both scales and the bias in
// its epilogue; INT8 through at::_int_mm, then the epilogue. Shapes those products refuse run
// small_rows_product up to 4 rows (one pass over the codes), and beyond that the same exact
// 8-bit values through a bfloat16 product with float32 sums.

#include "ops/common/cuda/eight_bit_product.h"

#include "ops/common/checks.h"
#include "ops/common/cuda/fp8_support.h"
#include "ops/common/cuda/small_rows_product.h"
#include "ops/reference/reference.h"

#include <ATen/ATen.h>

namespace bittorch::ops::cuda {

at::Tensor eight_bit_product(const at::Tensor& values, const at::Tensor& input_scale, const at::Tensor& codes,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             quant::ActivationFormat format, at::ScalarType dtype) {
  const int64_t in_features = codes.size(1), out_features = codes.size(0);
  const at::Tensor rows = values.reshape({linear_rows(values), in_features});
  const at::Tensor row_scale = input_scale.reshape({-1, 1});
  const int64_t num_rows = rows.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  // The epilogue adds a float16/bfloat16 bias only.
  const bool bias_in_epilogue = has_bias && dtype != at::kFloat;
  // cuBLASLt's FP8 product needs these sizes, FP8 tensor cores and an algorithm for the shape;
  // cuBLAS's INT8 product more than 16 rows and these sizes.
  const bool fp8_product = format == quant::ActivationFormat::Float8E4M3 && num_rows > 0 && in_features % 16 == 0 &&
                           out_features % 16 == 0 &&
                           fp8_product_available(num_rows, in_features, out_features, dtype, bias_in_epilogue);
  const bool int8_product =
      format == quant::ActivationFormat::Int8 && num_rows > 16 && in_features % 8 == 0 && out_features % 8 == 0;
  at::Tensor output;
  if (fp8_product) {
    const at::Tensor column_scale = weight_scale.reshape({1, -1}).expand({1, out_features}).contiguous();
    output = at::_scaled_mm(rows, codes.t(), row_scale, column_scale, bias_in_epilogue ? bias : std::nullopt,
                            std::nullopt, dtype,
                            /*use_fast_accum=*/true);
    if (has_bias && !bias_in_epilogue) output.add_(*bias);
  } else if (!int8_product && num_rows <= kSmallRowsMax) {
    output = small_rows_product(rows, row_scale, codes, weight_scale.to(at::kFloat), bias, dtype);
  } else {
    // 8-bit values and ternary codes are exact in bfloat16, and so are their products.
    const at::Tensor accumulator = int8_product
                                       ? at::_int_mm(rows, codes.t())
                                       : at::mm(rows.to(at::kBFloat16), codes.to(at::kBFloat16).t(), at::kFloat);
    output = scale_accumulator(accumulator, row_scale, weight_scale, bias, dtype);
  }
  return output.view(linear_output_shape(values, out_features));
}

}  // namespace bittorch::ops::cuda
