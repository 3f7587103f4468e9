// FP8 e4m3 codes times FP8 activations through at::_scaled_mm, both scales and the bias in
// its epilogue; INT8 through at::_int_mm, then the epilogue; shapes those products refuse run
// the same exact 8-bit values through a bfloat16 product with float32 sums.

#include "ops/common/cuda/eight_bit_product.h"

#include "ops/common/checks.h"
#include "ops/common/cuda/device.h"
#include "ops/reference/reference.h"

#include <ATen/ATen.h>

#include <mutex>
#include <set>
#include <string_view>
#include <tuple>

namespace bittorch::ops::cuda {
namespace {

// cuBLASLt has no FP8 kernel for a few shapes that meet the documented size rules (seen on an
// H100: one row with in_features = 11008). Such a call fails before it launches anything; the
// shape is remembered and runs the fallback product from then on.
using Fp8ProductKey = std::tuple<c10::DeviceIndex, int64_t, int64_t, int64_t, at::ScalarType, bool>;

class Fp8ShapesWithoutKernel {
 public:
  bool contains(const Fp8ProductKey& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    return keys_.count(key) != 0;
  }
  void add(const Fp8ProductKey& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    keys_.insert(key);
  }

 private:
  std::mutex mutex_;
  std::set<Fp8ProductKey> keys_;
};

Fp8ShapesWithoutKernel& fp8_shapes_without_kernel() {
  static Fp8ShapesWithoutKernel shapes;
  return shapes;
}

}  // namespace

at::Tensor eight_bit_product(const at::Tensor& values, const at::Tensor& input_scale, const at::Tensor& codes,
                             const at::Tensor& weight_scale, const std::optional<at::Tensor>& bias,
                             quant::ActivationFormat format, at::ScalarType dtype) {
  const int64_t in_features = codes.size(1), out_features = codes.size(0);
  const at::Tensor rows = values.reshape({-1, in_features});
  const at::Tensor row_scale = input_scale.reshape({-1, 1});
  const int64_t num_rows = rows.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor output;
  // cuBLASLt's FP8 and INT8 products need these sizes (and FP8 tensor cores).
  const Fp8ProductKey key{codes.device().index(), num_rows, in_features, out_features, dtype, has_bias};
  if (format == quant::ActivationFormat::Float8E4M3 && num_rows > 0 && in_features % 16 == 0 &&
      out_features % 16 == 0 && has_fp8_tensor_cores() && !fp8_shapes_without_kernel().contains(key)) {
    const at::Tensor column_scale = weight_scale.reshape({1, -1}).expand({1, out_features}).contiguous();
    // The epilogue adds a float16/bfloat16 bias only.
    const bool bias_in_epilogue = has_bias && dtype != at::kFloat;
    try {
      output = at::_scaled_mm(rows, codes.t(), row_scale, column_scale, bias_in_epilogue ? bias : std::nullopt,
                              std::nullopt, dtype,
                              /*use_fast_accum=*/true);
      if (has_bias && !bias_in_epilogue) output.add_(*bias);
    } catch (const c10::Error& error) {
      if (std::string_view(error.what()).find("CUBLAS_STATUS_NOT_SUPPORTED") == std::string_view::npos) throw;
      fp8_shapes_without_kernel().add(key);
    }
  }
  if (!output.defined()) {
    const bool int8_product =
        format == quant::ActivationFormat::Int8 && num_rows > 16 && in_features % 8 == 0 && out_features % 8 == 0;
    // 8-bit values and ternary codes are exact in bfloat16, and so are their products.
    const at::Tensor accumulator = int8_product
                                       ? at::_int_mm(rows, codes.t())
                                       : at::mm(rows.to(at::kBFloat16), codes.to(at::kBFloat16).t(), at::kFloat);
    output = scale_accumulator(accumulator, row_scale, weight_scale, bias, dtype);
  }
  return output.view(linear_output_shape(values, out_features));
}

}  // namespace bittorch::ops::cuda
