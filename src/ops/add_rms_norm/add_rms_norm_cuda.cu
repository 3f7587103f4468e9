// bittorch::add_rms_norm on CUDA. The forward, one block of 256 threads per row, adds the two
// inputs, writes the sum and sums its squares in one pass, reduces them over the block, and
// writes the normalized row (in the sum's dtype or output_dtype) in a second pass over the sum
// it just wrote (in L1/L2). The backward's blocks (as many as fit the GPU at once) each take
// every gridDim-th row: per row they reduce (grad_output * weight) . n and write the sum's
// gradient in one more pass, adding grad_output * n into the block's own column sums of the
// weight's gradient (in shared memory); the host sums the blocks' column sums. Where an operand
// is narrower than the sum, its copy of the gradient is written in the same pass.

#include "ops/add_rms_norm/add_rms_norm.h"
#include "ops/common/cuda/dependent_launch.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <type_traits>

namespace bittorch::ops::cuda {
namespace {

constexpr const char* kOp = "bittorch::add_rms_norm";
constexpr int kThreads = 256;

// Calls f with a value of the element type of an operand of `dtype`: a float32 sum's kernels
// read a bfloat16 or float16 operand (and write such an output) as it is; every other operand
// is in the sum's dtype. Only float32 sums instantiate the narrower types.
template <typename scalar_t, typename F>
void with_operand_type(at::ScalarType dtype, const F& f) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (dtype == at::kBFloat16) return f(at::BFloat16());
    if (dtype == at::kHalf) return f(at::Half());
  }
  f(scalar_t());
}

// The weight is read in its own dtype (the sum's or the accumulation's), so that a bfloat16
// model's norm needs no cast of its weight first.
template <typename scalar_t, typename residual_t, typename weight_t, typename output_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_forward_kernel(const scalar_t* input, const residual_t* residual, const weight_t* weight,
                                scalar_t* sum, output_t* output, acc_t* rstd, int64_t features, acc_t eps) {
  wait_for_prior_grid_and_allow_next();
  using Reduce = cub::BlockReduce<acc_t, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ acc_t row_rstd;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * features;
  acc_t squares = 0;
  for (int64_t c = threadIdx.x; c < features; c += kThreads) {
    const scalar_t s =
        static_cast<scalar_t>(static_cast<acc_t>(input[base + c]) + static_cast<acc_t>(residual[base + c]));
    sum[base + c] = s;
    squares += static_cast<acc_t>(s) * static_cast<acc_t>(s);
  }
  const acc_t total = Reduce(reduce_storage).Sum(squares);
  if (threadIdx.x == 0) {
    row_rstd = acc_t(1) / sqrt(total / static_cast<acc_t>(features) + eps);
    rstd[blockIdx.x] = row_rstd;
  }
  __syncthreads();
  const acc_t r = row_rstd;
  for (int64_t c = threadIdx.x; c < features; c += kThreads) {  // each thread rereads what it wrote
    output[base + c] = static_cast<output_t>(static_cast<acc_t>(sum[base + c]) * r * static_cast<acc_t>(weight[c]));
  }
}

// weight_grad_partials [gridDim.x, features], or null where the weight's gradient is not
// wanted; then no dynamic shared memory either. Each thread keeps the columns c = threadIdx.x
// (mod kThreads) of the block's sums, so they need no synchronization. grad_sum_narrow, or
// null: the sum's gradient rounded to narrow_t as well.
template <typename scalar_t, typename grad_t, typename narrow_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_backward_kernel(const grad_t* grad_output, const scalar_t* grad_sum_in, const scalar_t* sum,
                                 const acc_t* weight, const acc_t* rstd, scalar_t* grad_sum, narrow_t* grad_sum_narrow,
                                 acc_t* weight_grad_partials, int64_t rows, int64_t features) {
  wait_for_prior_grid_and_allow_next();
  using Reduce = cub::BlockReduce<acc_t, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ acc_t row_mean;
  extern __shared__ unsigned char column_bytes[];
  acc_t* weight_grad = reinterpret_cast<acc_t*>(column_bytes);
  const bool wants_weight_grad = weight_grad_partials != nullptr;
  if (wants_weight_grad) {
    for (int64_t c = threadIdx.x; c < features; c += kThreads) weight_grad[c] = 0;
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * features;
    const acc_t r = rstd[row];
    acc_t dot = 0;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) {
      dot += static_cast<acc_t>(grad_output[base + c]) * weight[c] * static_cast<acc_t>(sum[base + c]) * r;
    }
    // The reduction's storage and row_mean are reused by the next row only after its
    // reduction's own barrier, which every thread reaches after reading this row's mean.
    const acc_t total = Reduce(reduce_storage).Sum(dot);
    if (threadIdx.x == 0) row_mean = total / static_cast<acc_t>(features);
    __syncthreads();
    const acc_t mean = row_mean;
    for (int64_t c = threadIdx.x; c < features; c += kThreads) {
      const acc_t n = static_cast<acc_t>(sum[base + c]) * r, gy = static_cast<acc_t>(grad_output[base + c]);
      acc_t g = r * (gy * weight[c] - n * mean);
      if (grad_sum_in != nullptr) g += static_cast<acc_t>(grad_sum_in[base + c]);
      grad_sum[base + c] = static_cast<scalar_t>(g);
      if (grad_sum_narrow != nullptr) grad_sum_narrow[base + c] = static_cast<narrow_t>(static_cast<scalar_t>(g));
      if (wants_weight_grad) weight_grad[c] += gy * n;
    }
  }
  if (wants_weight_grad) {
    for (int64_t c = threadIdx.x; c < features; c += kThreads) {
      weight_grad_partials[blockIdx.x * features + c] = weight_grad[c];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& input, const at::Tensor& residual,
                                                            const at::Tensor& weight, double eps,
                                                            std::optional<at::ScalarType> output_dtype) {
  const auto sum_dtype = check_add_rms_norm_args(kOp, input, residual, weight, eps, output_dtype);
  const c10::cuda::CUDAGuard device_guard(input.device());
  // The operand in the sum's dtype first (addition commutes); the other may be narrower.
  const bool input_first = input.scalar_type() == sum_dtype;
  const auto first = (input_first ? input : residual).to(sum_dtype).contiguous();
  auto second = (input_first ? residual : input).contiguous();
  const bool narrower = second.scalar_type() != sum_dtype;
  if (narrower &&
      !(sum_dtype == at::kFloat && (second.scalar_type() == at::kBFloat16 || second.scalar_type() == at::kHalf))) {
    second = second.to(sum_dtype);
  }
  const int64_t features = first.size(-1), rows = first.numel() / features;
  const auto accumulate = add_rms_norm_accumulate_dtype(sum_dtype);
  // The kernels write the sum's dtype, or a narrower output from a float32 sum (autocast's
  // case); any other output dtype is a cast after.
  const auto wanted_output = output_dtype.value_or(sum_dtype);
  const bool narrower_output =
      sum_dtype == at::kFloat && (wanted_output == at::kBFloat16 || wanted_output == at::kHalf);
  auto sum = at::empty_like(first);
  auto output = at::empty_like(first, first.options().dtype(narrower_output ? wanted_output : sum_dtype));
  auto rstd = at::empty(first.sizes().slice(0, first.dim() - 1), first.options().dtype(accumulate));
  if (rows == 0) return {output.to(wanted_output).view(input.sizes()), sum.view(input.sizes()), rstd};
  const bool weight_as_sum = weight.scalar_type() == sum_dtype;
  const auto gain = (weight_as_sum ? weight : weight.to(accumulate)).contiguous();
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sum_dtype, "add_rms_norm_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto launch_with = [&](auto residual_zero, auto weight_zero, auto output_zero) {
      using residual_t = decltype(residual_zero);
      using weight_t = decltype(weight_zero);
      using output_t = decltype(output_zero);
      launch_dependent(add_rms_norm_forward_kernel<scalar_t, residual_t, weight_t, output_t, acc_t>,
                       dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, stream, first.const_data_ptr<scalar_t>(),
                       second.const_data_ptr<residual_t>(), gain.const_data_ptr<weight_t>(),
                       sum.mutable_data_ptr<scalar_t>(), output.mutable_data_ptr<output_t>(),
                       rstd.mutable_data_ptr<acc_t>(), features, static_cast<acc_t>(eps));
    };
    with_operand_type<scalar_t>(second.scalar_type(), [&](auto residual_zero) {
      with_operand_type<scalar_t>(output.scalar_type(), [&](auto output_zero) {
        if (weight_as_sum) {
          launch_with(residual_zero, scalar_t(), output_zero);
        } else {
          launch_with(residual_zero, acc_t(), output_zero);
        }
      });
    });
  });
  return {output.to(wanted_output).view(input.sizes()), sum.view(input.sizes()), rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_output,
                                                             const std::optional<at::Tensor>& grad_sum_in,
                                                             const at::Tensor& sum, const at::Tensor& weight,
                                                             const at::Tensor& rstd, std::array<bool, 2> output_mask,
                                                             std::optional<at::ScalarType> narrow_dtype) {
  check_add_rms_norm_backward_args(kOp, grad_output, grad_sum_in, sum, weight, rstd, narrow_dtype);
  const c10::cuda::CUDAGuard device_guard(sum.device());
  const auto s = sum.contiguous(), r = rstd.contiguous();
  // The kernel reads the gradient in the sum's dtype, or a narrower one with a float32 sum.
  const bool narrower_grad = s.scalar_type() == at::kFloat &&
                             (grad_output.scalar_type() == at::kBFloat16 || grad_output.scalar_type() == at::kHalf);
  const auto gy = (narrower_grad ? grad_output : grad_output.to(s.scalar_type())).contiguous();
  at::Tensor grad_sum, grad_weight, grad_sum_narrow;
  const int64_t features = s.size(-1), rows = s.numel() / features;
  const auto accumulate = r.scalar_type();
  const int64_t column_bytes = features * static_cast<int64_t>(c10::elementSize(accumulate));
  // The weight's gradient comes with the sum's where the block's column sums fit its shared
  // memory (48 KiB: 12288 float32 features); else, and alone, from the ATen expression.
  const bool weight_grad_in_kernel = output_mask[0] && output_mask[1] && rows > 0 && column_bytes <= 48 * 1024;
  if (output_mask[0]) {
    const bool has_in = grad_sum_in.has_value() && grad_sum_in->defined();
    const auto gs = has_in ? grad_sum_in->contiguous() : at::Tensor();
    grad_sum = at::empty_like(s);
    // The kernel writes a narrower copy of a float32 sum's gradient; any other is a cast after.
    const bool narrow_in_kernel =
        narrow_dtype && s.scalar_type() == at::kFloat && (*narrow_dtype == at::kBFloat16 || *narrow_dtype == at::kHalf);
    if (narrow_in_kernel) grad_sum_narrow = at::empty_like(s, s.options().dtype(*narrow_dtype));
    const auto gain = weight.to(accumulate).contiguous();
    const size_t shared_bytes = weight_grad_in_kernel ? static_cast<size_t>(column_bytes) : 0;
    at::Tensor partials;
    if (rows > 0) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "add_rms_norm_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        with_operand_type<scalar_t>(gy.scalar_type(), [&](auto grad_zero) {
          with_operand_type<scalar_t>(narrow_in_kernel ? *narrow_dtype : s.scalar_type(), [&](auto narrow_zero) {
            using grad_t = decltype(grad_zero);
            using narrow_t = decltype(narrow_zero);
            const auto kernel = add_rms_norm_backward_kernel<scalar_t, grad_t, narrow_t, acc_t>;
            // As many blocks as can be resident at once, each taking rows in turn: a block
            // beyond them would wait for a whole block's rows before it starts.
            int blocks_per_sm = 0;
            C10_CUDA_CHECK(
                cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, kThreads, shared_bytes));
            const int64_t blocks = std::min<int64_t>(
                rows, std::max(1, blocks_per_sm) *
                          static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount));
            if (weight_grad_in_kernel) partials = at::empty({blocks, features}, s.options().dtype(accumulate));
            launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), shared_bytes,
                             at::cuda::getCurrentCUDAStream(), gy.const_data_ptr<grad_t>(),
                             has_in ? gs.const_data_ptr<scalar_t>() : nullptr, s.const_data_ptr<scalar_t>(),
                             gain.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(),
                             grad_sum.mutable_data_ptr<scalar_t>(),
                             narrow_in_kernel ? grad_sum_narrow.mutable_data_ptr<narrow_t>() : nullptr,
                             weight_grad_in_kernel ? partials.mutable_data_ptr<acc_t>() : nullptr, rows, features);
          });
        });
      });
    }
    if (narrow_dtype && !narrow_in_kernel) grad_sum_narrow = grad_sum.to(*narrow_dtype);
    if (weight_grad_in_kernel) grad_weight = partials.sum(0).to(weight.scalar_type());
  }
  if (output_mask[1] && !weight_grad_in_kernel) grad_weight = add_rms_norm_weight_grad(gy, s, weight, r);
  return {grad_sum, grad_weight, grad_sum_narrow};
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("_add_rms_norm_forward", &forward_cuda);
  m.impl("_add_rms_norm_backward", &backward_cuda);
}

}  // namespace bittorch::ops::cuda
