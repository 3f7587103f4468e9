// FP8 e4m3 codes times FP8 activations through at::_scaled_mm, both scales and the bias in
// its epilogue; INT8 through at::_int_mm, then the epilogue. cuBLASLt refuses FP8 for some
// shapes of few rows (on the H200: up to 16 rows of 11008 input features, up to 8 of 8192) and
// _int_mm takes more than 16 rows only: those run on rows padded with zeros to a size the
// library takes (a few rows cost the product about as much as one: it reads the whole weight
// either way). What is refused even so runs small_rows_product up to 4 rows (one pass over
// the codes), and beyond that the same exact 8-bit values through a bfloat16 product with
// float32 sums.

#include "ops/common/cuda/eight_bit_product.h"

#include "ops/common/checks.h"
#include "ops/common/cuda/fp8_support.h"
#include "ops/common/cuda/small_rows_product.h"
#include "ops/reference/reference.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace bittorch::ops::cuda {

namespace {

// Rows padded to these sizes are tried, in order, where the library refuses the rows themselves.
constexpr int64_t kPaddedRows[] = {16, 32, 64};

// How at::_scaled_mm is to run: on `rows` rows (at least the input's), the bias in its epilogue or not.
struct Fp8Plan {
  int64_t rows = 0;
  bool bias_in_epilogue = false;
};

// The first FP8 product cuBLASLt offers: the rows themselves, then padded; the bias in the
// epilogue where asked, then after it.
std::optional<Fp8Plan> plan_fp8_product(int64_t num_rows, int64_t in_features, int64_t out_features,
                                        at::ScalarType dtype, bool bias_in_epilogue) {
  if (num_rows == 0 || in_features % 16 != 0 || out_features % 16 != 0) return std::nullopt;
  std::vector<int64_t> candidates{num_rows};
  for (const int64_t padded : kPaddedRows) {
    if (padded > num_rows) candidates.push_back(padded);
  }
  for (const int64_t rows : candidates) {
    for (const bool epilogue : {bias_in_epilogue, false}) {
      if (fp8_product_available(rows, in_features, out_features, dtype, epilogue)) return Fp8Plan{rows, epilogue};
      if (!bias_in_epilogue) break;
    }
  }
  return std::nullopt;
}

// `rows` [num_rows, K] followed by zero rows up to `padded_rows`; `rows` itself if none are missing.
at::Tensor padded_rows(const at::Tensor& rows, int64_t padded_rows) {
  if (rows.size(0) == padded_rows) return rows;
  // Zeroed as bytes: every 8-bit format's zero is the all-zero byte.
  at::Tensor padded = at::zeros({padded_rows, rows.size(1)}, rows.options().dtype(at::kByte)).view(rows.scalar_type());
  padded.narrow(0, 0, rows.size(0)).copy_(rows);
  return padded;
}

}  // namespace

at::Tensor eight_bit_product(const at::Tensor& values, const at::Tensor& input_scale, const at::Tensor& codes,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             quant::ActivationFormat format, at::ScalarType dtype) {
  const int64_t in_features = codes.size(1), out_features = codes.size(0);
  const at::Tensor rows = values.reshape({linear_rows(values), in_features});
  const at::Tensor row_scale = input_scale.reshape({-1, 1});
  const int64_t num_rows = rows.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  // The epilogue adds a float16/bfloat16 bias only.
  const std::optional<Fp8Plan> fp8 =
      format == quant::ActivationFormat::Float8E4M3
          ? plan_fp8_product(num_rows, in_features, out_features, dtype, has_bias && dtype != at::kFloat)
          : std::nullopt;
  // cuBLAS's INT8 product: more than 16 rows (fewer are padded to 32) and these sizes.
  const bool int8_product =
      format == quant::ActivationFormat::Int8 && num_rows > 0 && in_features % 8 == 0 && out_features % 8 == 0;
  at::Tensor output;
  if (fp8) {
    const at::Tensor column_scale = weight_scale.reshape({1, -1}).expand({1, out_features}).contiguous();
    const at::Tensor padded_scale =
        fp8->rows == num_rows ? row_scale : at::cat({row_scale, row_scale.new_ones({fp8->rows - num_rows, 1})});
    output = at::_scaled_mm(padded_rows(rows, fp8->rows), codes.t(), padded_scale, column_scale,
                            fp8->bias_in_epilogue ? bias : std::nullopt, std::nullopt, dtype,
                            /*use_fast_accum=*/true)
                 .narrow(0, 0, num_rows);
    if (has_bias && !fp8->bias_in_epilogue) output.add_(*bias);
  } else if (!int8_product && num_rows <= kSmallRowsMax) {
    output = small_rows_product(rows, row_scale, codes, weight_scale.to(at::kFloat), bias, dtype);
  } else {
    // 8-bit values and ternary codes are exact in bfloat16, and so are their products.
    const at::Tensor accumulator =
        int8_product ? at::_int_mm(padded_rows(rows, std::max<int64_t>(num_rows, 32)), codes.t()).narrow(0, 0, num_rows)
                     : at::mm(rows.to(at::kBFloat16), codes.to(at::kBFloat16).t(), at::kFloat);
    output = scale_accumulator(accumulator, row_scale, weight_scale, bias, dtype);
  }
  return output.view(linear_output_shape(values, out_features));
}

}  // namespace bittorch::ops::cuda
