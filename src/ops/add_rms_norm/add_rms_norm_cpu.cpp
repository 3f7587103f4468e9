// bittorch::add_rms_norm on the CPU, from its formulas: the sum in one ATen add, then per row
// (threads over rows) the mean square, the reciprocal RMS and the scaled output; the backward
// per row likewise, the weight's gradient as a reduction over rows.

#include "ops/add_rms_norm/add_rms_norm.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::add_rms_norm";
constexpr int64_t kRowsPerTask = 16;

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& input, const at::Tensor& residual,
                                                           const at::Tensor& weight, double eps,
                                                           std::optional<at::ScalarType> output_dtype) {
  const auto sum_dtype = check_add_rms_norm_args(kOp, input, residual, weight, eps, output_dtype);
  const auto sum = at::add(input, residual).contiguous();  // in the promoted dtype, one pass
  const int64_t features = sum.size(-1), rows = sum.numel() / features;
  const auto accumulate = add_rms_norm_accumulate_dtype(sum_dtype);
  auto output = at::empty_like(sum, sum.options().dtype(output_dtype.value_or(sum_dtype)));
  auto rstd = at::empty(sum.sizes().slice(0, sum.dim() - 1), sum.options().dtype(accumulate));
  const auto gain = weight.to(accumulate).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sum_dtype, "add_rms_norm_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using sum_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "add_rms_norm_cpu_output", [&] {
      using out_t = scalar_t;
      const auto* s = sum.const_data_ptr<sum_t>();
      const auto* w = gain.const_data_ptr<acc_t>();
      auto* out = output.mutable_data_ptr<out_t>();
      auto* r = rstd.mutable_data_ptr<acc_t>();
      at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const sum_t* x = s + row * features;
          acc_t squares = 0;
          for (int64_t c = 0; c < features; ++c) squares += static_cast<acc_t>(x[c]) * static_cast<acc_t>(x[c]);
          const acc_t reciprocal =
              acc_t(1) / std::sqrt(squares / static_cast<acc_t>(features) + static_cast<acc_t>(eps));
          r[row] = reciprocal;
          for (int64_t c = 0; c < features; ++c) {
            out[row * features + c] = static_cast<out_t>(static_cast<acc_t>(x[c]) * reciprocal * w[c]);
          }
        }
      });
    });
  });
  return {output, sum, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_output,
                                                            const std::optional<at::Tensor>& grad_sum_in,
                                                            const at::Tensor& sum, const at::Tensor& weight,
                                                            const at::Tensor& rstd, std::array<bool, 2> output_mask,
                                                            std::optional<at::ScalarType> narrow_dtype) {
  check_add_rms_norm_backward_args(kOp, grad_output, grad_sum_in, sum, weight, rstd, narrow_dtype);
  const int64_t features = sum.size(-1), rows = sum.numel() / features;
  const auto accumulate = rstd.scalar_type();
  const auto s_all = sum.contiguous(), r_all = rstd.contiguous();
  const auto gy_all = grad_output.to(sum.scalar_type()).contiguous();  // from the output's dtype where it differs
  at::Tensor grad_sum, grad_weight;
  if (output_mask[0]) {
    const bool has_in = grad_sum_in.has_value() && grad_sum_in->defined();
    const auto gs_all = has_in ? grad_sum_in->contiguous() : at::Tensor();
    grad_sum = at::empty_like(s_all);
    const auto gain = weight.to(accumulate).contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sum.scalar_type(), "add_rms_norm_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto* s = s_all.const_data_ptr<scalar_t>();
      const auto* gy = gy_all.const_data_ptr<scalar_t>();
      const auto* gs = has_in ? gs_all.const_data_ptr<scalar_t>() : nullptr;
      const auto* w = gain.const_data_ptr<acc_t>();
      const auto* r = r_all.const_data_ptr<acc_t>();
      auto* out = grad_sum.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t base = row * features;
          // mean over the row of (grad_output * weight) * n, n = sum * rstd
          acc_t dot = 0;
          for (int64_t c = 0; c < features; ++c) {
            dot += static_cast<acc_t>(gy[base + c]) * w[c] * static_cast<acc_t>(s[base + c]) * r[row];
          }
          dot /= static_cast<acc_t>(features);
          for (int64_t c = 0; c < features; ++c) {
            const acc_t n = static_cast<acc_t>(s[base + c]) * r[row];
            acc_t g = r[row] * (static_cast<acc_t>(gy[base + c]) * w[c] - n * dot);
            if (gs != nullptr) g += static_cast<acc_t>(gs[base + c]);
            out[base + c] = static_cast<scalar_t>(g);
          }
        }
      });
    });
  }
  if (output_mask[1]) grad_weight = add_rms_norm_weight_grad(gy_all, s_all, weight, rstd);
  const auto grad_sum_narrow = grad_sum.defined() && narrow_dtype ? grad_sum.to(*narrow_dtype) : at::Tensor();
  return {grad_sum, grad_weight, grad_sum_narrow};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("_add_rms_norm_forward", &forward_cpu);
  m.impl("_add_rms_norm_backward", &backward_cpu);
}

}  // namespace bittorch::ops
