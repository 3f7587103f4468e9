// bittorch::add_rms_norm_packed_linear on CUDA: up to 8 rows of float16 or bfloat16 (a decode
// step's), 16-bit or quantized to 8 bits, in the packed mma kernel with its norm prologue (one
// launch); anything else as add_rms_norm, then packed_ternary_linear.

#include "ops/add_rms_norm_packed_linear/add_rms_norm_packed_linear.h"

#include "ops/common/checks.h"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/packed_ternary_linear/packed_ternary_linear.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

constexpr const char* kOp = "bittorch::add_rms_norm_packed_linear";

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& input, const at::Tensor& residual,
                                                const at::Tensor& norm_weight, double eps, const at::Tensor& packed,
                                                const at::Tensor& scale, const std::optional<at::Tensor>& bias,
                                                int64_t in_features, c10::string_view activation_format,
                                                c10::string_view epilogue) {
  check_add_rms_norm_packed_linear_args(kOp, input, residual, norm_weight, eps, packed, scale, bias, in_features,
                                        activation_format, epilogue);
  const int64_t rows = input.numel() / in_features, words = packed.size(1);
  const auto dtype = input.scalar_type();
  const auto format = parse_activation_format(activation_format);
  const bool one_kernel =
      (dtype == at::kHalf || dtype == at::kBFloat16) && norm_weight.scalar_type() == dtype && rows >= 1 &&
      rows <= kMaxMmaVariantRows &&
      prologue_bytes(rows, words, input.element_size(), /*normed=*/true, format) <= kMaxPrologueBytes;
  if (!one_kernel) {
    return add_rms_norm_packed_linear_composite(input, residual, norm_weight, eps, packed, scale, bias, in_features,
                                                activation_format, epilogue);
  }
  const c10::cuda::CUDAGuard device_guard(input.device());
  PackedProduct p;
  p.x = input.reshape({rows, in_features}).contiguous();
  p.norm_residual = residual.reshape({rows, in_features}).contiguous();
  p.norm_weight = norm_weight.contiguous();
  p.norm_eps = eps;
  p.prologue_format = format;
  p.norm_sum = at::empty_like(p.x);
  p.packed = packed.contiguous();
  p.scale = scale.contiguous();
  if (bias.has_value() && bias->defined()) p.bias = bias->contiguous();
  p.squared_relu = parse_packed_epilogue(kOp, epilogue) == PackedEpilogue::SquaredReLU;
  p.out = at::empty({rows, packed.size(0)}, input.options());
  mma_product(p);
  return {p.out.view(linear_output_shape(input, packed.size(0))), p.norm_sum.view(input.sizes())};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("add_rms_norm_packed_linear", &forward_cuda);
}

}  // namespace bittorch::ops::cuda
