#pragma once

// The per-row 8-bit activation quantizer of row_quantize.cuh's skeleton, for the kernels that
// quantize rows (ops/quantize_activations) and those that quantize the rows they produce
// (ops/squared_relu's squared_relu_quantized).

#include "ops/common/cuda/row_quantize.cuh"
#include "ops/reference/reference.h"

#include <ATen/core/Tensor.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace bittorch::ops::cuda {

// scale = max(absmax, floor) / max_code and values = x / scale rounded to the format, in
// float32, exactly as the CPU reference. The quotient is x times the correctly rounded
// reciprocal of the scale, corrected by one fused multiply-add of the exact remainder
// (Markstein): the correctly rounded x / scale without a division per element. FP8 through
// the hardware conversion (round to nearest even, like c10's conversion that the reference's
// .to(float8_e4m3fn) uses; the value is already clamped to the finite range, so saturation
// never differs).
template <typename in_t>
struct ActivationQuantizer {
  using scale_t = float;
  static constexpr bool max_statistic = true;
  bool int8;
  float max_code;
  float* scale;
  uint8_t* values;

  // A row holding NaN (+-Inf) gets a NaN (infinite) scale and values 0, as in the reference.
  __device__ float finish_row(int64_t row, double total, int64_t /*cols*/) const {
    const float s = floor_keeping_nan(static_cast<float>(total), kMinActivationAbsMax) / max_code;
    scale[row] = s;
    return s;
  }

  template <int N>
  __device__ void write(int64_t index, const Pack<in_t, N>& x, float s) const {
    Pack<uint8_t, N> bytes;
    const float reciprocal = 1.0F / s;
    const bool finite_scale = isfinite(s);  // an infinite scale's quotients are signed zeros: divided
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float xi = static_cast<float>(x.v[i]);
      const float estimate = xi * reciprocal;
      const float remainder = fmaf(-estimate, s, xi);
      // An exact estimate keeps its sign (-0 stays -0, as the reference's quotient does).
      const float scaled =
          !finite_scale ? xi / s : (remainder == 0.0F ? estimate : fmaf(remainder, reciprocal, estimate));
      const float v = isfinite(scaled) ? fminf(fmaxf(scaled, -max_code), max_code) : 0.0F;
      bytes.v[i] = int8 ? static_cast<uint8_t>(static_cast<int8_t>(nearbyintf(v)))
                        : static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
    }
    *reinterpret_cast<Pack<uint8_t, N>*>(values + index) = bytes;
  }
};

/// The quantizer writing `format`'s rows into values and scale (from empty_quantized_rows).
template <typename in_t>
ActivationQuantizer<in_t> activation_quantizer(quant::ActivationFormat format, at::Tensor& values, at::Tensor& scale) {
  return {format == quant::ActivationFormat::Int8, max_activation_code(format), scale.data_ptr<float>(),
          static_cast<uint8_t*>(values.data_ptr())};
}

}  // namespace bittorch::ops::cuda
