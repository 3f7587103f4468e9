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
// Measured on the H100 (docs/results.md, issue 28: every variant by name at 1-1024 rows on
// 4096^2, 8192^2 and the language model's widths, commit 2ab0328). Up to 8 rows the mma kernel
// (the fastest or within 2% everywhere, and the one with the decode step's norm and
// quantization prologues). At 9-16 rows of 16-bit activations stream, on every layer (16 rows:
// 5.4 us on 768 x 3072 against split_k's 6.1, 19.4 on 8192^2 against 29.2). Beyond, and for
// 8-bit rows from 9, stream on layers of 2^24 weights and more up to 64 rows; smaller layers,
// where its few blocks leave the GPU idle (768 x 3072 at 64 rows: 17.2 us against BF16's 5.2),
// split_k up to 32 rows and tiled up to 64. On Hopper, from 64 rows, wgmma where it takes the
// call and the layer has enough output features for its 128-feature tiles to fill the GPU:
// 4096 and more for 16-bit rows (8192^2: 40.2 us at 64 rows against stream's 45.9, 75.2 at 256
// against tiled's 160), up to 256 rows (at 1024 rows cuBLAS on the expanded codes is faster on
// every shape); 3072 and more for e4m3 rows, at any count (8192^2: 27.7 us at 64 rows against
// stream's 44.3, 155.7 at 1024 against BF16's 190). Then tiled up to 64 rows, up to 128 for
// layers of 2^25 weights and more; beyond, cuBLAS on the expanded codes.
constexpr int64_t kMaxStreamRowsOfEveryLayer = 16;
constexpr int64_t kMaxStreamRows = 64;
constexpr int64_t kMinStreamWeights = int64_t{1} << 24;
constexpr int64_t kMaxSplitKRows = 32;
constexpr int64_t kMinWgmmaRows = 64;
constexpr int64_t kMaxWgmmaSixteenBitRows = 256;
constexpr int64_t kMinWgmmaSixteenBitFeatures = 4096;
constexpr int64_t kMinWgmmaE4m3Features = 3072;
constexpr int64_t kMaxTiledRows = 64;
constexpr int64_t kMaxTiledRowsOfLargeLayers = 128;
constexpr int64_t kLargeLayerWeights = int64_t{1} << 25;

// What the choice of a variant depends on.
struct PackedCall {
  int64_t rows, in_features, out_features;
  quant::ActivationFormat format;
  bool tensor_cores;  // 16-bit or 8-bit rows
  bool wgmma;         // wgmma_takes the operands (Hopper, where it is built)
};

// The variant for a call (the figures above): float32 activations run the GEMV (tensor cores
// would round them) and beyond it cuBLAS on the expanded codes; 16-bit and 8-bit ones the mma
// kernel, then stream or split_k, wgmma, the tiled GEMM (e4m3 activations in stream and tiled
// need FP8 tensor cores), then cuBLAS.
std::string_view chosen_kernel(const PackedCall& call) {
  const int64_t rows = call.rows, weights = call.in_features * call.out_features;
  if (!call.tensor_cores) return rows <= kMaxGemvRows ? "gemv" : "expand";
  if (rows <= kMaxMmaVariantRows) return "mma";
  const bool sixteen_bit = call.format == quant::ActivationFormat::None;
  const bool e4m3 = call.format == quant::ActivationFormat::Float8E4M3;
  const bool eight_bit_cores = !e4m3 || has_fp8_tensor_cores();
  if (call.wgmma && rows >= kMinWgmmaRows &&
      (sixteen_bit ? call.out_features >= kMinWgmmaSixteenBitFeatures && rows <= kMaxWgmmaSixteenBitRows
                   : call.out_features >= kMinWgmmaE4m3Features)) {
    return "wgmma";
  }
  if (eight_bit_cores && rows <= kMaxStreamRows &&
      (weights >= kMinStreamWeights || (sixteen_bit && rows <= kMaxStreamRowsOfEveryLayer))) {
    return "stream";
  }
  if (rows <= kMaxSplitKRows) return "split_k";
  const bool tiled_rows =
      rows <= kMaxTiledRows || (rows <= kMaxTiledRowsOfLargeLayers && weights >= kLargeLayerWeights);
  return tiled_rows && eight_bit_cores ? "tiled" : "expand";
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
  const bool e4m3 = format == quant::ActivationFormat::Float8E4M3;
#ifdef BITTORCH_WITH_CUTLASS
  // int8 rows are not wgmma's; e4m3 ones are, as float8_e4m3fn.
  const bool wgmma = (format == quant::ActivationFormat::None || e4m3) &&
                     wgmma_takes(packed, e4m3 ? at::kFloat8_e4m3fn : input.scalar_type(), input.scalar_type());
#else
  const bool wgmma = false;
#endif
  const std::string_view kernel = kernel_name == "auto"
                                      ? chosen_kernel({rows, in_features, out_features, format, tensor_cores, wgmma})
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
