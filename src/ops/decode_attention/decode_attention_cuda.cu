// bittorch::decode_attention on CUDA: one block of 256 threads per (head, batch) row does the
// whole step in one kernel. The rotary embedding and the cache writes first (thread per
// element), then a score per cached position (thread per position, the key row read with
// vector loads), a block-wide softmax, and the weighted sum of the value rows (a group of
// threads per row, partial sums combined in shared memory). The position is read on the
// device, so a captured graph replays at whatever positions the tensor holds.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/common/cuda/row_quantize.cuh"
#include "ops/decode_attention/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>

#include <cmath>
#include <cstdint>

namespace bittorch::ops::cuda {
namespace {

constexpr int kThreads = kDecodeAttentionCudaThreads;
constexpr int64_t kMaxSharedBytes = kDecodeAttentionCudaSharedBytes;

template <typename scalar_t>
struct DecodeArgs {
  const scalar_t* query;
  const scalar_t* key;
  const scalar_t* value;
  int64_t query_stride, key_stride, value_stride;  // between sequences (slices of a fused projection)
  scalar_t* key_cache;
  scalar_t* value_cache;
  const int64_t* position;  // one for the batch, or one per sequence
  bool position_per_sequence;
  const float* cos;
  const float* signed_sin;
  scalar_t* out;
  int heads, context, head_size;
  float softmax_scale;
};

// Floats of dynamic shared memory: the rotated query, a score per position, and the value
// groups' partial sums.
int64_t shared_floats(int64_t context, int64_t head_size, int vec) {
  const int64_t groups = kThreads / (head_size / vec);
  return head_size + context + groups * head_size;
}

template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads) decode_attention_kernel(DecodeArgs<scalar_t> a) {
  {
    // Before the wait: the row's cached keys and values of the earlier positions (written by
    // earlier steps) on their way to L2, while the projection before makes this position's
    // query, key and value. Only a hint: the position is read again after the wait.
    const int64_t row = static_cast<int64_t>(blockIdx.y) * a.heads + blockIdx.x;
    const int64_t p = a.position[a.position_per_sequence ? blockIdx.y : 0];
    if (p > 0 && p < a.context) {
      const int64_t bytes = p * a.head_size * static_cast<int64_t>(sizeof(scalar_t));
      prefetch_to_l2(a.key_cache + row * a.context * a.head_size, bytes);
      prefetch_to_l2(a.value_cache + row * a.context * a.head_size, bytes);
    }
  }
  wait_for_prior_grid_and_allow_next();
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ float broadcast;
  extern __shared__ float shared[];
  const int d_size = a.head_size, half = d_size / 2;
  float* rotated = shared;
  float* scores = rotated + d_size;
  float* partial = scores + a.context;

  const int64_t row = static_cast<int64_t>(blockIdx.y) * a.heads + blockIdx.x;
  const int64_t in = row * d_size;
  const int64_t head_offset = static_cast<int64_t>(blockIdx.x) * d_size;
  const scalar_t* query = a.query + blockIdx.y * a.query_stride + head_offset;
  const scalar_t* key = a.key + blockIdx.y * a.key_stride + head_offset;
  const scalar_t* value = a.value + blockIdx.y * a.value_stride + head_offset;
  scalar_t* keys = a.key_cache + row * a.context * d_size;
  scalar_t* values = a.value_cache + row * a.context * d_size;
  const int64_t p = a.position[a.position_per_sequence ? blockIdx.y : 0];
  if (p < 0 || p >= a.context) {  // nothing written, NaN returned: no silent result
    for (int d = threadIdx.x; d < d_size; d += kThreads) a.out[in + d] = static_cast<scalar_t>(NAN);
    return;
  }

  const float* cos_row = a.cos + p * d_size;
  const float* sin_row = a.signed_sin + p * d_size;
  for (int d = threadIdx.x; d < d_size; d += kThreads) {
    const int partner = (d + half) % d_size;
    rotated[d] = static_cast<float>(query[d]) * cos_row[d] + static_cast<float>(query[partner]) * sin_row[d];
    keys[p * d_size + d] =
        static_cast<scalar_t>(static_cast<float>(key[d]) * cos_row[d] + static_cast<float>(key[partner]) * sin_row[d]);
    values[p * d_size + d] = value[d];
  }
  __syncthreads();  // the rotated query in shared memory, row p of the caches written

  using Vec = Pack<scalar_t, VEC>;
  const int vecs_per_row = d_size / VEC;
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j <= p; j += kThreads) {
    const Vec* key_row = reinterpret_cast<const Vec*>(keys + j * d_size);
    float dot = 0.f;
    for (int i = 0; i < vecs_per_row; ++i) {
      const Vec k = key_row[i];
#pragma unroll
      for (int e = 0; e < VEC; ++e) dot += rotated[i * VEC + e] * static_cast<float>(k.v[e]);
    }
    const float score = dot * a.softmax_scale;
    scores[j] = score;
    local_max = (isnan(score) || score > local_max) ? score : local_max;
  }
  const float block_max =
      Reduce(reduce_storage).Reduce(local_max, [](float x, float y) { return (isnan(x) || x > y) ? x : y; });
  if (threadIdx.x == 0) broadcast = block_max;
  __syncthreads();
  const float max_score = broadcast;
  float local_total = 0.f;
  for (int64_t j = threadIdx.x; j <= p; j += kThreads) {
    const float weight = __expf(scores[j] - max_score);
    scores[j] = weight;
    local_total += weight;
  }
  __syncthreads();  // reduce_storage is reused; the weights are in shared memory
  const float total = Reduce(reduce_storage).Sum(local_total);
  if (threadIdx.x == 0) broadcast = total;

  // Groups of vecs_per_row threads: thread `lane` of group g sums elements lane * VEC.. of the
  // value rows g, g + groups, ...
  const int groups = kThreads / vecs_per_row;
  const int group = threadIdx.x / vecs_per_row, lane = threadIdx.x % vecs_per_row;
  if (group < groups) {
    float sum[VEC] = {};
    for (int64_t j = group; j <= p; j += groups) {
      const Vec v = reinterpret_cast<const Vec*>(values + j * d_size)[lane];
      const float weight = scores[j];
#pragma unroll
      for (int e = 0; e < VEC; ++e) sum[e] += weight * static_cast<float>(v.v[e]);
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) partial[group * d_size + lane * VEC + e] = sum[e];
  }
  __syncthreads();
  const float inverse_total = 1.f / broadcast;
  for (int d = threadIdx.x; d < d_size; d += kThreads) {
    float y = 0.f;
    for (int g = 0; g < groups; ++g) y += partial[g * d_size + d];
    a.out[in + d] = static_cast<scalar_t>(y * inverse_total);
  }
}

bool aligned(const void* pointer, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

template <typename scalar_t, int VEC>
void launch(const DecodeArgs<scalar_t>& args, int64_t batch, int64_t shared_bytes) {
  const dim3 grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(batch));
  launch_dependent(decode_attention_kernel<scalar_t, VEC>, grid, dim3(kThreads), static_cast<size_t>(shared_bytes),
                   at::cuda::getCurrentCUDAStream(), args);
}

at::Tensor decode_attention_cuda(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                 at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& position,
                                 const at::Tensor& cos, const at::Tensor& signed_sin) {
  const char* op = "bittorch::decode_attention";
  check_decode_attention_args(op, query, key, value, key_cache, value_cache, position, cos, signed_sin);
  TORCH_CHECK(query.scalar_type() != at::kDouble, op, ": float64 runs on the CPU only");
  const int64_t batch = query.size(0), heads = query.size(1), head_size = query.size(2), context = key_cache.size(2);
  TORCH_CHECK(head_size <= 2 * kThreads, op, ": head_size ", head_size, " exceeds the CUDA kernel's ", 2 * kThreads);
  TORCH_CHECK(heads <= 65535 && batch <= 65535, op, ": too many heads or rows for one grid");
  const c10::cuda::CUDAGuard device_guard(query.device());
  auto out = at::empty(query.sizes(), query.options());
  const auto q = with_contiguous_rows(query), k = with_contiguous_rows(key), v = with_contiguous_rows(value);
  const auto cos_table = cos.contiguous(), sin_table = signed_sin.contiguous();
  const auto dispatch = [&](auto zero) {
    using scalar_t = decltype(zero);
    DecodeArgs<scalar_t> args{q.const_data_ptr<scalar_t>(),
                              k.const_data_ptr<scalar_t>(),
                              v.const_data_ptr<scalar_t>(),
                              q.stride(0),
                              k.stride(0),
                              v.stride(0),
                              key_cache.mutable_data_ptr<scalar_t>(),
                              value_cache.mutable_data_ptr<scalar_t>(),
                              position.const_data_ptr<int64_t>(),
                              position.numel() > 1,
                              cos_table.const_data_ptr<float>(),
                              sin_table.const_data_ptr<float>(),
                              out.mutable_data_ptr<scalar_t>(),
                              static_cast<int>(heads),
                              static_cast<int>(context),
                              static_cast<int>(head_size),
                              static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_size)))};
    // The widest load (up to 16 bytes) that divides a row and fits both caches' alignment.
    int vec = 16 / static_cast<int>(sizeof(scalar_t));
    while (vec > 1 && (head_size % vec != 0 || !aligned(args.key_cache, vec * sizeof(scalar_t)) ||
                       !aligned(args.value_cache, vec * sizeof(scalar_t)))) {
      vec /= 2;
    }
    // A value row's vectors each need a thread of the block (else no group would sum them).
    TORCH_CHECK(head_size / vec <= kThreads, op, ": head_size ", head_size, " in vectors of ", vec,
                " elements (the caches' alignment) exceeds the CUDA kernel's ", kThreads, " threads");
    const int64_t shared_bytes = shared_floats(context, head_size, vec) * static_cast<int64_t>(sizeof(float));
    TORCH_CHECK(shared_bytes <= kMaxSharedBytes, op, ": a context of ", context, " with head_size ", head_size,
                " needs ", shared_bytes, " bytes of shared memory, over the kernel's ", kMaxSharedBytes);
    switch (vec) {
      case 8:
        if constexpr (sizeof(scalar_t) <= 2) launch<scalar_t, 8>(args, batch, shared_bytes);
        break;
      case 4:
        launch<scalar_t, 4>(args, batch, shared_bytes);
        break;
      case 2:
        launch<scalar_t, 2>(args, batch, shared_bytes);
        break;
      default:
        launch<scalar_t, 1>(args, batch, shared_bytes);
    }
  };
  switch (query.scalar_type()) {
    case at::kFloat:
      dispatch(float{});
      break;
    case at::kHalf:
      dispatch(at::Half{});
      break;
    default:
      dispatch(at::BFloat16{});
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("decode_attention", &decode_attention_cuda);
}

}  // namespace bittorch::ops::cuda
