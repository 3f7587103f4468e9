// bittorch::rotary_embedding on CUDA: one launch rotates the query and the key. Each thread
// owns kVec pairs (d, d + head_size / 2) of one row (a position of one head): it reads both
// runs of kVec elements and their table entries in vector loads and writes both results, so
// each element is read and written exactly once; rows of the query come first in the grid,
// then rows of the key. kVec fills 16 bytes where the head size and the layout allow it
// (8 bfloat16 elements: 4 threads per row of 64), else 1.

#include "ops/rotary_embedding/rotary_embedding.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace bittorch::ops::cuda {
namespace {

constexpr int kThreads = 256;

// Where a [batch, heads, positions, head_size] tensor's rows start: its sizes and strides.
struct RowLayout {
  uint32_t heads, positions;
  int64_t in_strides[3], out_strides[3];
};

template <typename scalar_t>
struct RotaryOperand {
  const scalar_t* in;
  scalar_t* out;
  RowLayout layout;
  uint32_t rows;
};

template <typename T, int N>
struct alignas(sizeof(T) * N) Run {
  T v[N];
};

template <int kVec, typename T>
__device__ __forceinline__ Run<T, kVec> load_run(const T* p) {
  return *reinterpret_cast<const Run<T, kVec>*>(p);
}

// Where row `row` of x starts in its input and its output; its position.
template <typename scalar_t>
struct RowPointers {
  const scalar_t* in;
  scalar_t* out;
  uint32_t t;
};

template <typename scalar_t>
__device__ __forceinline__ RowPointers<scalar_t> row_pointers(const RotaryOperand<scalar_t>& x, uint32_t row) {
  const uint32_t t = row % x.layout.positions, head_row = row / x.layout.positions;
  const uint32_t h = head_row % x.layout.heads, b = head_row / x.layout.heads;
  return {x.in + b * x.layout.in_strides[0] + h * x.layout.in_strides[1] + t * x.layout.in_strides[2],
          x.out + b * x.layout.out_strides[0] + h * x.layout.out_strides[1] + t * x.layout.out_strides[2], t};
}

template <int kVec, typename scalar_t, typename acc_t>
__device__ void rotate_run(const RotaryOperand<scalar_t>& x, uint32_t row, uint32_t j, const acc_t* cos,
                           const acc_t* signed_sin, uint32_t half, acc_t sign) {
  const auto [in, out, t] = row_pointers(x, row);
  const acc_t* c = cos + static_cast<int64_t>(t) * 2 * half;
  const acc_t* s = signed_sin + static_cast<int64_t>(t) * 2 * half;
  const auto first = load_run<kVec>(in + j), second = load_run<kVec>(in + j + half);
  const auto c1 = load_run<kVec>(c + j), c2 = load_run<kVec>(c + j + half);
  const auto s1 = load_run<kVec>(s + j), s2 = load_run<kVec>(s + j + half);
  Run<scalar_t, kVec> out1, out2;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const acc_t x1 = static_cast<acc_t>(first.v[i]), x2 = static_cast<acc_t>(second.v[i]);
    out1.v[i] = static_cast<scalar_t>(x1 * c1.v[i] + x2 * sign * s1.v[i]);
    out2.v[i] = static_cast<scalar_t>(x2 * c2.v[i] + x1 * sign * s2.v[i]);
  }
  *reinterpret_cast<Run<scalar_t, kVec>*>(out + j) = out1;
  *reinterpret_cast<Run<scalar_t, kVec>*>(out + j + half) = out2;
}

// The same runs copied as they are (rotary_embedding_split's value heads).
template <int kVec, typename scalar_t>
__device__ void copy_run(const RotaryOperand<scalar_t>& x, uint32_t row, uint32_t j, uint32_t half) {
  const auto [in, out, t] = row_pointers(x, row);
  *reinterpret_cast<Run<scalar_t, kVec>*>(out + j) = load_run<kVec>(in + j);
  *reinterpret_cast<Run<scalar_t, kVec>*>(out + j + half) = load_run<kVec>(in + j + half);
}

template <int kVec, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    rotary_embedding_kernel(RotaryOperand<scalar_t> query, RotaryOperand<scalar_t> key, RotaryOperand<scalar_t> value,
                            const acc_t* cos, const acc_t* signed_sin, uint32_t half, acc_t sign) {
  const uint32_t runs_per_row = half / kVec;
  const uint32_t thread = blockIdx.x * kThreads + threadIdx.x;
  const uint32_t row = thread / runs_per_row, j = (thread % runs_per_row) * kVec;
  if (row < query.rows) {
    rotate_run<kVec>(query, row, j, cos, signed_sin, half, sign);
  } else if (row - query.rows < key.rows) {
    rotate_run<kVec>(key, row - query.rows, j, cos, signed_sin, half, sign);
  } else if (row - query.rows - key.rows < value.rows) {
    copy_run<kVec>(value, row - query.rows - key.rows, j, half);
  }
}

template <typename scalar_t>
RotaryOperand<scalar_t> operand(const at::Tensor& in, const at::Tensor& out) {
  RotaryOperand<scalar_t> x{in.const_data_ptr<scalar_t>(),
                            out.mutable_data_ptr<scalar_t>(),
                            {static_cast<uint32_t>(in.size(1)), static_cast<uint32_t>(in.size(2)), {}, {}},
                            static_cast<uint32_t>(in.size(0) * in.size(1) * in.size(2))};
  for (int i = 0; i < 3; ++i) {
    x.layout.in_strides[i] = in.stride(i);
    x.layout.out_strides[i] = out.stride(i);
  }
  return x;
}

// Whether runs of `elements` elements of every row of t start on a multiple of `bytes`.
bool rows_aligned(const at::Tensor& t, int64_t elements, int64_t bytes) {
  if (reinterpret_cast<uintptr_t>(t.const_data_ptr()) % bytes != 0) return false;
  for (int i = 0; i < 3; ++i) {
    if (t.size(i) > 1 && t.stride(i) % elements != 0) return false;
  }
  return true;
}

// The rotation of query and key in one launch; with `value` (head dimension contiguous, the
// key's shape), its rows are copied into value_out in the same launch.
std::tuple<at::Tensor, at::Tensor> rotate_both(const char* op, const at::Tensor& query, const at::Tensor& key,
                                               const at::Tensor& cos, const at::Tensor& signed_sin, double sign,
                                               const at::Tensor& rotated_query = {}, const at::Tensor& rotated_key = {},
                                               const at::Tensor& value = {}, const at::Tensor& value_out = {}) {
  const c10::cuda::CUDAGuard device_guard(query.device());
  auto o = rotary_operands(op, query, key, cos, signed_sin, rotated_query, rotated_key);
  const int64_t half = query.size(3) / 2;
  const int64_t key_rows = key.size(0) * key.size(1) * key.size(2);
  const int64_t rows = query.size(0) * query.size(1) * query.size(2) + key_rows * (value.defined() ? 2 : 1);
  if (rows == 0 || half == 0) return {o.rotated_query, o.rotated_key};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "rotary_embedding_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kWide = 16 / sizeof(scalar_t);
    const auto launch = [&](auto vec) {
      constexpr int kVec = decltype(vec)::value;
      const int64_t threads = rows * (half / kVec);
      TORCH_CHECK(threads <= std::numeric_limits<uint32_t>::max() - kThreads, op, ": ", rows, " rows of ", 2 * half,
                  " exceed one launch");
      rotary_embedding_kernel<kVec, scalar_t, acc_t>
          <<<static_cast<unsigned>((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
              operand<scalar_t>(o.query, o.rotated_query), operand<scalar_t>(o.key, o.rotated_key),
              value.defined() ? operand<scalar_t>(value, value_out) : RotaryOperand<scalar_t>{},
              o.cos.const_data_ptr<acc_t>(), o.signed_sin.const_data_ptr<acc_t>(), static_cast<uint32_t>(half),
              static_cast<acc_t>(sign));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    // The tables' runs are kWide elements of acc_t: aligned like the inputs' when their rows are.
    const bool wide = half % kWide == 0 && rows_aligned(o.query, kWide, 16) &&
                      rows_aligned(o.rotated_query, kWide, 16) && rows_aligned(o.key, kWide, 16) &&
                      rows_aligned(o.rotated_key, kWide, 16) &&
                      (!value.defined() || (rows_aligned(value, kWide, 16) && rows_aligned(value_out, kWide, 16))) &&
                      reinterpret_cast<uintptr_t>(o.cos.const_data_ptr()) % (kWide * sizeof(acc_t)) == 0 &&
                      reinterpret_cast<uintptr_t>(o.signed_sin.const_data_ptr()) % (kWide * sizeof(acc_t)) == 0;
    if (wide) {
      launch(std::integral_constant<int, kWide>());
    } else {
      launch(std::integral_constant<int, 1>());
    }
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

RotateInto rotate_into(const char* op, const at::Tensor& cos, const at::Tensor& signed_sin) {
  return [=](const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, double sign,
             const at::Tensor& rotated_query, const at::Tensor& rotated_key, const at::Tensor& value_out) {
    rotate_both(op, query, key, cos, signed_sin, sign, rotated_query, rotated_key, value, value_out);
  };
}

// One launch each way: the value heads' rows are copied by the rotation's threads.
std::tuple<at::Tensor, at::Tensor, at::Tensor> split_forward_cuda(const at::Tensor& joined, int64_t query_heads,
                                                                  const at::Tensor& cos, const at::Tensor& signed_sin) {
  const c10::cuda::CUDAGuard device_guard(joined.device());
  constexpr const char* op = "bittorch::rotary_embedding_split";
  return rotary_split_forward(op, joined, query_heads, cos, signed_sin, rotate_into(op, cos, signed_sin));
}

at::Tensor split_backward_cuda(const at::Tensor& grad_query, const at::Tensor& grad_key, const at::Tensor& grad_value,
                               const at::Tensor& cos, const at::Tensor& signed_sin) {
  const c10::cuda::CUDAGuard device_guard(grad_query.device());
  constexpr const char* op = "bittorch::_rotary_embedding_split_backward";
  return rotary_split_backward(op, grad_query, grad_key, grad_value, cos, signed_sin, rotate_into(op, cos, signed_sin));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("rotary_embedding", &forward_cuda);
  m.impl("_rotary_embedding_backward", &backward_cuda);
  m.impl("rotary_embedding_split", &split_forward_cuda);
  m.impl("_rotary_embedding_split_backward", &split_backward_cuda);
}

}  // namespace bittorch::ops::cuda
