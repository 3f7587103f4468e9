// bittorch::rotary_embedding on CUDA: one launch rotates the query and the key. Each thread
// owns a pair (d, d + head_size / 2) of one row (a position of one head): it reads both
// elements and their table entries once and writes both results, so each element is read and
// written exactly once; rows of the query come first in the grid, then rows of the key.

#include "ops/rotary_embedding/rotary_embedding.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace bittorch::ops::cuda {
namespace {

// Where a [batch, heads, positions, head_size] tensor's rows start: its sizes and strides.
struct RowLayout {
  int64_t heads, positions;
  int64_t in_strides[3], out_strides[3];
};

template <typename scalar_t, typename acc_t>
struct RotaryOperand {
  const scalar_t* in;
  scalar_t* out;
  RowLayout layout;
  int64_t rows;
};

template <typename scalar_t, typename acc_t>
__device__ void rotate_row(const RotaryOperand<scalar_t, acc_t>& x, int64_t row, const acc_t* cos,
                           const acc_t* signed_sin, int64_t half, acc_t sign) {
  const int64_t t = row % x.layout.positions, h = (row / x.layout.positions) % x.layout.heads,
                b = row / (x.layout.positions * x.layout.heads);
  const scalar_t* in = x.in + b * x.layout.in_strides[0] + h * x.layout.in_strides[1] + t * x.layout.in_strides[2];
  scalar_t* out = x.out + b * x.layout.out_strides[0] + h * x.layout.out_strides[1] + t * x.layout.out_strides[2];
  const acc_t* c = cos + t * 2 * half;
  const acc_t* s = signed_sin + t * 2 * half;
  for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
    const acc_t x1 = static_cast<acc_t>(in[j]), x2 = static_cast<acc_t>(in[j + half]);
    out[j] = static_cast<scalar_t>(x1 * c[j] + x2 * sign * s[j]);
    out[j + half] = static_cast<scalar_t>(x2 * c[j + half] + x1 * sign * s[j + half]);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void rotary_embedding_kernel(RotaryOperand<scalar_t, acc_t> query, RotaryOperand<scalar_t, acc_t> key,
                                        const acc_t* cos, const acc_t* signed_sin, int64_t half, acc_t sign) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row < query.rows) {
    rotate_row(query, row, cos, signed_sin, half, sign);
  } else if (row < query.rows + key.rows) {
    rotate_row(key, row - query.rows, cos, signed_sin, half, sign);
  }
}

template <typename scalar_t, typename acc_t>
RotaryOperand<scalar_t, acc_t> operand(const at::Tensor& in, at::Tensor& out) {
  RotaryOperand<scalar_t, acc_t> x{in.const_data_ptr<scalar_t>(),
                                   out.mutable_data_ptr<scalar_t>(),
                                   {in.size(1), in.size(2), {}, {}},
                                   in.size(0) * in.size(1) * in.size(2)};
  for (int i = 0; i < 3; ++i) {
    x.layout.in_strides[i] = in.stride(i);
    x.layout.out_strides[i] = out.stride(i);
  }
  return x;
}

std::tuple<at::Tensor, at::Tensor> rotate_both(const char* op, const at::Tensor& query, const at::Tensor& key,
                                               const at::Tensor& cos, const at::Tensor& signed_sin, double sign) {
  const c10::cuda::CUDAGuard device_guard(query.device());
  auto o = rotary_operands(op, query, key, cos, signed_sin);
  const int64_t half = query.size(3) / 2;
  const int64_t rows = query.size(0) * query.size(1) * query.size(2) + key.size(0) * key.size(1) * key.size(2);
  if (rows == 0 || half == 0) return {o.rotated_query, o.rotated_key};
  // Threads across a row's pairs (a warp multiple, at most 128), rows across the rest of 256.
  const int pair_threads = static_cast<int>(std::min<int64_t>(128, (half + 31) / 32 * 32));
  const dim3 block(pair_threads, 256 / pair_threads);
  const int64_t blocks = (rows + block.y - 1) / block.y;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), op, ": ", rows, " rows exceed one launch");
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "rotary_embedding_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    rotary_embedding_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
        operand<scalar_t, acc_t>(o.query, o.rotated_query), operand<scalar_t, acc_t>(o.key, o.rotated_key),
        o.cos.const_data_ptr<acc_t>(), o.signed_sin.const_data_ptr<acc_t>(), half, static_cast<acc_t>(sign));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {o.rotated_query, o.rotated_key};
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                                                const at::Tensor& signed_sin) {
  return rotate_both("bittorch::rotary_embedding", query, key, cos, signed_sin, 1.0);
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                 const at::Tensor& cos, const at::Tensor& signed_sin) {
  return rotate_both("bittorch::_rotary_embedding_backward", grad_query, grad_key, cos, signed_sin, -1.0);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("rotary_embedding", &forward_cuda);
  m.impl("_rotary_embedding_backward", &backward_cuda);
}

}  // namespace bittorch::ops::cuda
