// CUDA implementation of bittorch::packed_ternary_linear: picks a kernel variant (variants.h)
// by the heuristics below, or the one the call names.

#include "ops/common/checks.h"
#include "ops/common/cuda/device.h"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"
#include "ops/quantize_activations/quantize_activations_kernels.cuh"

#include <bittorch/quant/packing.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <string_view>

namespace bittorch::ops::cuda {
namespace {

// Beyond 4 rows the GEMV's arithmetic costs more than expanding the codes for cuBLAS.
constexpr int64_t kMaxGemvRows = 4;
// The routes below come from every variant timed by name on the H100 at 1-1024 rows on
// 4096^2, 8192^2 and the language model's widths, with 16-bit and with e4m3 rows
// (docs/results.md, issue 28, commit 53849a1), and for wgmma with its codes in fragment order
// at 16-1024 rows of 4096^2, 8192^2 and 8192 x 28672 (commit 5e167bd; microseconds in the
// comments). The mma kernel takes up to 8 rows everywhere (the fastest or within 2%, and the
// one with the decode step's norm and quantization prologues).
constexpr int64_t kMaxStreamRowsOfEveryLayer = 32;
constexpr int64_t kLayerWeights23 = int64_t{1} << 23;
constexpr int64_t kLayerWeights24 = int64_t{1} << 24;
constexpr int64_t kLayerWeights25 = int64_t{1} << 25;

// What the choice of a variant depends on.
struct PackedCall {
  int64_t rows, in_features, out_features;
  const at::Tensor& packed;  // the codes as the caller gave them
  at::ScalarType input_dtype;
  quant::ActivationFormat format;
  int64_t weights() const { return in_features * out_features; }
  // Whether wgmma_takes the operands (Hopper, where it is built; e4m3 rows as float8_e4m3fn,
  // int8 ones not at all). Asked last, only where a route would take it. Not for inference
  // tensors nor for codes that are not contiguous (the op multiplies a contiguous copy): wgmma's
  // copy of their codes in fragment order would be made in every call (wgmma_codes.h).
  bool wgmma() const {
#ifdef BITTORCH_WITH_CUTLASS
    const bool e4m3 = format == quant::ActivationFormat::Float8E4M3;
    return (format == quant::ActivationFormat::None || e4m3) && packed.is_contiguous() && !packed.is_inference() &&
           wgmma_takes(packed, e4m3 ? at::kFloat8_e4m3fn : input_dtype, input_dtype);
#else
    return false;
#endif
  }
};

// 16-bit rows, 9 and more. stream up to 32 rows on every layer (32 rows of 6144 x 1536: 8.2
// against split_k's 15.9; 8192^2: 29.0 against wgmma's 30.0). wgmma on layers of 4096 output
// features and more, whose 128-feature tiles fill the GPU, from 96 rows, 64 on layers of 2^24
// weights and 48 on layers of 2^25 (4096^2 at 64 rows: 18.0 against stream's 19.6; 8192^2:
// 28.9 against 46.1; smaller layers were not timed below 96 rows with the codes in fragment
// order), up to 1024 rows (the most measured) on layers of 2^24 weights and more (at 1024 rows
// against cuBLAS on the expanded codes: 4096^2 49.1 against 62.8, 8192^2 214 against 265,
// 8192 x 28672 746 against 928), up to 256 on smaller ones (1536 x 6144 at 512 rows, before the
// fragment order: cuBLAS 26.4 against 35.6). Elsewhere stream up to 128 rows on layers of 2^23
// weights and more (6144 x 1536 at 128 rows: 20.2 against cuBLAS's 23.0); on smaller ones
// split_k up to 64 rows (3072 x 768: 9.5 against cuBLAS's 11.7, 768 x 3072: 10.0 against 8.6),
// then cuBLAS. The tiled GEMM is not the fastest at any of these points.
std::string_view sixteen_bit_kernel(const PackedCall& call) {
  const int64_t rows = call.rows, weights = call.weights();
  if (rows <= kMaxStreamRowsOfEveryLayer) return "stream";
  if (call.out_features >= 4096 &&
      (rows >= 96 || (weights >= kLayerWeights24 && rows >= 64) || (weights >= kLayerWeights25 && rows >= 48)) &&
      (rows <= 256 || (weights >= kLayerWeights24 && rows <= 1024)) && call.wgmma()) {
    return "wgmma";
  }
  if (weights >= kLayerWeights23) return rows <= 128 ? "stream" : "expand";
  return rows <= 64 ? "split_k" : "expand";
}

// e4m3 rows (quantized by the op), 9 and more, on FP8 tensor cores. wgmma from 32 rows on
// layers of 3072 output features and more (8192^2 at 64 rows: 25.0 against stream's 44.2;
// 768 x 3072 at 32 rows 10.8 against split_k's 11.0; on 4096^2 at 32-64 rows stream is about
// 5% faster), from 16 rows on layers of 2^25 weights (8192 x 28672 at 16 rows: 50.2 against
// split_k's 78.2; 8192^2: 28.9 against 28.7) and from 256 rows on layers of 2^23 weights
// (6144 x 1536: 26.5 against stream's 30.3). Elsewhere stream up to 256 rows, but split_k
// below 32 rows on layers of 2^25 weights (8192^2 at 16 rows, where wgmma is not built: 28.7
// against stream's 39.5); then cuBLAS.
std::string_view e4m3_kernel(const PackedCall& call) {
  const int64_t rows = call.rows, weights = call.weights();
  if (((call.out_features >= 3072 && rows >= 32) || (weights >= kLayerWeights25 && rows >= 16) ||
       (weights >= kLayerWeights23 && rows >= 256)) &&
      call.wgmma()) {
    return "wgmma";
  }
  if (weights >= kLayerWeights25 && rows < 32) return "split_k";
  return rows <= 256 ? "stream" : "expand";
}

// int8 rows, 9 and more (not timed since stream came; the H100's figures of commit e93eb23):
// stream up to 64 rows on layers of 2^24 weights and more, else split_k up to 32; then the tiled
// GEMM up to 64 rows, 128 on layers of 2^25 weights and more; then cuBLAS.
std::string_view int8_kernel(const PackedCall& call) {
  const int64_t rows = call.rows, weights = call.weights();
  if (rows <= 64 && weights >= kLayerWeights24) return "stream";
  if (rows <= 32) return "split_k";
  return rows <= 64 || (rows <= 128 && weights >= kLayerWeights25) ? "tiled" : "expand";
}

// The variant for a call: float32 activations run the GEMV (tensor cores would round them),
// then cuBLAS on the expanded codes; 16-bit and 8-bit ones the mma kernel up to 8 rows, then as
// above. Without FP8 tensor cores, e4m3 rows go to split_k (which widens them) up to 32 rows,
// then cuBLAS.
std::string_view chosen_kernel(const PackedCall& call, bool tensor_cores) {
  if (!tensor_cores) return call.rows <= kMaxGemvRows ? "gemv" : "expand";
  if (call.rows <= kMaxMmaVariantRows) return "mma";
  switch (call.format) {
    case quant::ActivationFormat::None:
      return sixteen_bit_kernel(call);
    case quant::ActivationFormat::Float8E4M3:
      return has_fp8_tensor_cores() ? e4m3_kernel(call) : (call.rows <= 32 ? "split_k" : "expand");
    case quant::ActivationFormat::Int8:
      return int8_kernel(call);
  }
  return "expand";
}

// The kernels read whole words of 16 elements in 16-byte loads: `rows` itself where it has
// that layout, else a copy padded with zeros.
at::Tensor word_aligned_rows(const at::Tensor& rows, int64_t words) {
  const int64_t columns = words * quant::kCodesPerWord;
  if (rows.size(1) == columns && rows.is_contiguous() && reinterpret_cast<uintptr_t>(rows.data_ptr()) % 16 == 0) {
    return rows;
  }
  at::Tensor padded = at::zeros({rows.size(0), columns}, rows.options());
  padded.narrow(1, 0, rows.size(1)).copy_(rows);
  return padded;
}

at::Tensor packed_ternary_linear_cuda(const at::Tensor& input, const at::Tensor& packed_in, const at::Tensor& scale_in,
                                      const std::optional<at::Tensor>& bias, int64_t in_features,
                                      c10::string_view activation_format, c10::string_view kernel_name,
                                      c10::string_view epilogue) {
  const char* op = "bittorch::packed_ternary_linear";
  const auto format =
      check_packed_linear_args(op, input, packed_in, scale_in, bias, in_features, activation_format, kernel_name);
  const bool squared_relu = parse_packed_epilogue(op, epilogue) == PackedEpilogue::SquaredReLU;
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor packed = packed_in.contiguous(), scale = scale_in.contiguous();
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const at::Tensor rows_in = input.reshape({-1, in_features});
  const int64_t rows = rows_in.size(0);
  const auto out_shape = linear_output_shape(input, out_features);
  const bool eight_bit = format != quant::ActivationFormat::None;
  const bool tensor_cores = eight_bit || input.scalar_type() != at::kFloat;
  const std::string_view kernel =
      kernel_name == "auto"
          ? chosen_kernel({rows, in_features, out_features, packed_in, input.scalar_type(), format}, tensor_cores)
          : std::string_view(kernel_name.data(), kernel_name.size());
  TORCH_CHECK(kernel != "gemv" || !tensor_cores, op,
              ": kernel \"gemv\" takes float32 activations without 8-bit quantization");
  TORCH_CHECK((kernel != "mma" && kernel != "split_k" && kernel != "stream" && kernel != "tiled") || tensor_cores, op,
              ": kernel \"", kernel, "\" takes float16/bfloat16 or 8-bit activations, not float32 ones");
  const bool sixteen_bit = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  // Refused before the rows are quantized for it: its output has the input's dtype, 16-bit only.
  TORCH_CHECK(kernel != "wgmma" || sixteen_bit, op, ": kernel \"wgmma\" takes float16/bfloat16 activations, not ",
              input.scalar_type());
  if (kernel == "expand") {
    // cuBLAS rounds first; the epilogue follows on the rounded outputs.
    auto y = expand_product(rows_in, packed, scale, bias, in_features, format);
    if (squared_relu) y = at::where(y < 0, at::zeros({}, y.options()), y * y);
    return y.view(out_shape);
  }

  PackedProduct p;
  p.squared_relu = squared_relu;
  p.out = at::empty({rows, out_features}, input.options());
  if (rows == 0) return p.out.view(out_shape);
  if (eight_bit && kernel == "mma" && sixteen_bit &&
      prologue_bytes(rows, words, input.element_size(), /*normed=*/false, format) <= kMaxPrologueBytes) {
    // The kernel's blocks quantize the rows themselves: no kernel of its own.
    p.x = rows_in.contiguous();
    p.prologue_format = format;
  } else if (eight_bit) {
    auto [values, input_scale] = quantize_activation_rows(rows_in, format);
    p.x = word_aligned_rows(values, words);
    p.row_scale = input_scale;
  } else {
    p.x = word_aligned_rows(rows_in, words);
  }
  p.packed = packed;
  p.scale = scale;
  // The kernels read the bias as a dense vector: a strided one (a view) is copied first.
  if (bias.has_value() && bias->defined()) p.bias = bias->contiguous();
  if (kernel == "gemv") {
    gemv_product(p);
  } else if (kernel == "mma") {
    mma_product(p);
  } else if (kernel == "split_k") {
    split_k_product(p);
  } else if (kernel == "stream") {
    stream_product(p);
#ifdef BITTORCH_WITH_CUTLASS
  } else if (kernel == "wgmma") {
    wgmma_product(p);
#endif
  } else {
    tiled_product(p);
  }
  return p.out.view(out_shape);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("packed_ternary_linear", &packed_ternary_linear_cuda);
}

}  // namespace bittorch::ops::cuda
