// bittorch::add_rms_norm on CUDA. The forward, one block of 256 threads per row, adds the two
// inputs, writes the sum and sums its squares in one pass, reduces them over the block, and
// writes the normalized row (in the sum's dtype or output_dtype) in a second pass over the sum
// it just wrote (in L1/L2). The backward's blocks (as many as fit the GPU at once) each take
// every gridDim-th row: per row they reduce (grad_output * weight) . n and write the sum's
// gradient in one more pass, adding grad_output * n into the block's own column sums of the
// weight's gradient (in shared memory); the host sums the blocks' column sums. Where an operand
// is narrower than the sum, its copy of the gradient is written in the same pass. Float32 sums
// of the transformer's widths (512 to 1536 features) take a warp per row instead, both ways,
// the row in registers: one read of each operand and no barrier per row.

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
#include <cstdint>
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

constexpr int kWarpsPerBlock = kThreads / 32;

// Four consecutive elements as float32, in one load: 16 bytes of float32, 8 of a 16-bit type.
template <typename T>
__device__ __forceinline__ void load4(const T* p, float (&v)[4]) {
  if constexpr (std::is_same_v<T, float>) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
  } else {
    static_assert(sizeof(T) == 2, "a 16-bit type");
    T t[4];
    const uint2 bits = *reinterpret_cast<const uint2*>(p);
    memcpy(t, &bits, sizeof(bits));
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(t[i]);
  }
}

template <typename T>
__device__ __forceinline__ void store4(T* p, const float (&v)[4]) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    T t[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) t[i] = static_cast<T>(v[i]);
    uint2 bits;
    memcpy(&bits, t, sizeof(bits));
    *reinterpret_cast<uint2*>(p) = bits;
  }
}

// The backward of a float32 sum of kChunks * 128 features, a warp per row: lane l reads
// features j * 128 + 4l .. 4l + 3 of each chunk j once, in one load per operand, and keeps
// them in registers for the dot product (a warp shuffle: no barrier per row), the sum's
// gradient and the weight's, whose column sums stay in the lane's registers over all the
// warp's rows. At the end the block's warps add theirs in shared memory, one warp after
// another (a fixed order: deterministic). grad_sum_narrow, or null: the gradient rounded to
// grad_t as well.
template <int kChunks, typename grad_t>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_backward_warp_kernel(const grad_t* grad_output, const float* grad_sum_in, const float* sum,
                                      const float* weight, const float* rstd, float* grad_sum, grad_t* grad_sum_narrow,
                                      float* weight_grad_partials, int64_t rows) {
  wait_for_prior_grid_and_allow_next();
  constexpr int kFeatures = kChunks * 128;
  __shared__ float block_columns[kFeatures];
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  float column_sums[kChunks][4] = {};
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t base = row * kFeatures;
    const float r = rstd[row];
    float n[kChunks][4], gy[kChunks][4];
    float dot = 0;
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int c = j * 128 + lane * 4;
      float s[4], w[4];
      load4(sum + base + c, s);
      load4(grad_output + base + c, gy[j]);
      load4(weight + c, w);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        n[j][i] = s[i] * r;
        dot += gy[j][i] * w[i] * n[j][i];
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    const float mean = dot / static_cast<float>(kFeatures);
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int c = j * 128 + lane * 4;
      float w[4], g[4], in[4] = {};
      load4(weight + c, w);
      if (grad_sum_in != nullptr) load4(grad_sum_in + base + c, in);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        g[i] = r * (gy[j][i] * w[i] - n[j][i] * mean) + in[i];
        column_sums[j][i] += gy[j][i] * n[j][i];
      }
      store4(grad_sum + base + c, g);
      if (grad_sum_narrow != nullptr) store4(grad_sum_narrow + base + c, g);
    }
  }
  if (weight_grad_partials == nullptr) return;  // the same for every thread
  for (int c = static_cast<int>(threadIdx.x); c < kFeatures; c += kThreads) block_columns[c] = 0;
  __syncthreads();
  for (int turn = 0; turn < kWarpsPerBlock; ++turn) {
    if (warp == turn) {
#pragma unroll
      for (int j = 0; j < kChunks; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) block_columns[j * 128 + lane * 4 + i] += column_sums[j][i];
      }
    }
    __syncthreads();
  }
  for (int c = static_cast<int>(threadIdx.x); c < kFeatures; c += kThreads) {
    weight_grad_partials[static_cast<int64_t>(blockIdx.x) * kFeatures + c] = block_columns[c];
  }
}

// The forward of a float32 sum of kChunks * 128 features, a warp per row: lane l adds features
// j * 128 + 4l .. 4l + 3 of each chunk j (one load per operand), writes them to the sum and
// keeps them in registers for the sum of squares (a warp shuffle) and the normalized output.
// The weight is float32 (a float32 sum's norm reads its weight in float32).
template <int kChunks, typename residual_t, typename output_t>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_forward_warp_kernel(const float* input, const residual_t* residual, const float* weight, float* sum,
                                     output_t* output, float* rstd, int64_t rows, float eps) {
  wait_for_prior_grid_and_allow_next();
  constexpr int kFeatures = kChunks * 128;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x) / 32;
  if (row >= rows) return;  // a whole warp: the shuffles below involve no lane that left
  const int64_t base = row * kFeatures;
  float s[kChunks][4];
  float squares = 0;
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int c = j * 128 + lane * 4;
    float a[4], b[4];
    load4(input + base + c, a);
    load4(residual + base + c, b);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s[j][i] = a[i] + b[i];
      squares += s[j][i] * s[j][i];
    }
    store4(sum + base + c, s[j]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) squares += __shfl_xor_sync(0xffffffffu, squares, offset);
  const float r = 1.0F / sqrtf(squares / static_cast<float>(kFeatures) + eps);
  if (lane == 0) rstd[row] = r;
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int c = j * 128 + lane * 4;
    float w[4], out[4];
    load4(weight + c, w);
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = s[j][i] * r * w[i];
    store4(output + base + c, out);
  }
}

// Calls f with std::integral_constant<int, chunks> for the row widths the warp kernels take
// (512, 768, 1024 and 1536 features: 4 to 12 chunks of 128; wider rows would spill its
// registers) and returns true; false for any other width.
template <typename F>
bool with_warp_chunks(int64_t features, const F& f) {
  switch (features) {
    case 512:
      return f(std::integral_constant<int, 4>()), true;
    case 768:
      return f(std::integral_constant<int, 6>()), true;
    case 1024:
      return f(std::integral_constant<int, 8>()), true;
    case 1536:
      return f(std::integral_constant<int, 12>()), true;
    default:
      return false;
  }
}

// As many blocks as can be resident at once, at most `wanted`: each takes rows in turn, so a
// block beyond them would wait for a whole block's rows before it starts.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, size_t shared_bytes, int64_t wanted) {
  int blocks_per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, kThreads, shared_bytes));
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::min<int64_t>(wanted, std::max(1, blocks_per_sm) * sms);
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
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
  // The warp kernel: a float32 sum of a width it takes, every row aligned for its loads.
  const bool warp_rows = sum_dtype == at::kFloat && aligned(first.const_data_ptr(), 16) &&
                         aligned(second.const_data_ptr(), 16) && with_warp_chunks(features, [](auto) {});
  if (warp_rows) {
    with_operand_type<float>(second.scalar_type(), [&](auto residual_zero) {
      with_operand_type<float>(output.scalar_type(), [&](auto output_zero) {
        with_warp_chunks(features, [&](auto chunks) {
          using residual_t = decltype(residual_zero);
          using output_t = decltype(output_zero);
          launch_dependent(add_rms_norm_forward_warp_kernel<decltype(chunks)::value, residual_t, output_t>,
                           dim3(static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock)), dim3(kThreads), 0,
                           stream, first.const_data_ptr<float>(), second.const_data_ptr<residual_t>(),
                           gain.const_data_ptr<float>(), sum.mutable_data_ptr<float>(),
                           output.mutable_data_ptr<output_t>(), rstd.mutable_data_ptr<float>(), rows,
                           static_cast<float>(eps));
        });
      });
    });
    return {output.to(wanted_output).view(input.sizes()), sum.view(input.sizes()), rstd};
  }
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
    // The warp kernel: a float32 sum of a width it takes, the gradient read (and its narrow
    // copy written) as float32, bfloat16 or float16, every row aligned for its loads.
    const bool warp_rows = rows > 0 && s.scalar_type() == at::kFloat &&
                           (gy.scalar_type() == at::kFloat || narrower_grad) &&
                           (!narrow_in_kernel || *narrow_dtype == gy.scalar_type()) &&
                           aligned(s.const_data_ptr(), 16) && aligned(gy.const_data_ptr(), 16) &&
                           (!has_in || aligned(gs.const_data_ptr(), 16)) && with_warp_chunks(features, [](auto) {});
    if (warp_rows) {
      const auto launch = [&](auto grad_zero) {
        using grad_t = decltype(grad_zero);
        with_warp_chunks(features, [&](auto chunks) {
          const auto kernel = add_rms_norm_backward_warp_kernel<decltype(chunks)::value, grad_t>;
          const int64_t blocks = resident_blocks(kernel, 0, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
          if (weight_grad_in_kernel) partials = at::empty({blocks, features}, s.options());
          launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0,
                           at::cuda::getCurrentCUDAStream(), gy.const_data_ptr<grad_t>(),
                           has_in ? gs.const_data_ptr<float>() : nullptr, s.const_data_ptr<float>(),
                           gain.const_data_ptr<float>(), r.const_data_ptr<float>(), grad_sum.mutable_data_ptr<float>(),
                           narrow_in_kernel ? grad_sum_narrow.mutable_data_ptr<grad_t>() : nullptr,
                           weight_grad_in_kernel ? partials.mutable_data_ptr<float>() : nullptr, rows);
        });
      };
      if (gy.scalar_type() == at::kBFloat16) {
        launch(at::BFloat16());
      } else if (gy.scalar_type() == at::kHalf) {
        launch(at::Half());
      } else {
        launch(float());
      }
    } else if (rows > 0) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "add_rms_norm_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        with_operand_type<scalar_t>(gy.scalar_type(), [&](auto grad_zero) {
          with_operand_type<scalar_t>(narrow_in_kernel ? *narrow_dtype : s.scalar_type(), [&](auto narrow_zero) {
            using grad_t = decltype(grad_zero);
            using narrow_t = decltype(narrow_zero);
            const auto kernel = add_rms_norm_backward_kernel<scalar_t, grad_t, narrow_t, acc_t>;
            const int64_t blocks = resident_blocks(kernel, shared_bytes, rows);
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
