// bittorch::sample_tokens on CUDA: one kernel, a block of 256 threads per row. The block finds
// the row's first NaN (its answer, if any); at a temperature with top_k below the vocabulary,
// the row's largest logit m, the scores s_i = (x_i - m) / T (0 where x_i = m, so that no
// temperature overflows them and equal infinite logits share the draw) and, with top_k below
// the vocabulary, the k-th largest score by a radix select (four passes of a 256-bin histogram over the
// scores' order-preserving bits); then each thread keeps the best (key, index) of its scores,
// the key s_i - log E_i (E_i an exponential draw) or at temperature 0 the
// logit itself, and the block reduces them (ties to the smaller index). Random numbers come
// from Philox4x32-10 at the generator's seed and offset, read through ATen's PhiloxCudaState:
// inside a CUDA graph from device memory, so each replay draws anew.

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/sample_tokens/sample_tokens.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <ATen/cuda/detail/UnpackRaw.cuh>

#include <curand_philox4x32_x.h>
#include <cub/block/block_reduce.cuh>

#include <cstdint>
#include <limits>
#include <mutex>

namespace bittorch::ops::cuda {
namespace {

constexpr const char* kOp = "bittorch::sample_tokens";
constexpr int kThreads = 256;
constexpr int kDigits = 256;  // a radix pass's bins: 8 bits of the key

// The best candidate so far: the largest key, the smaller index among equal keys.
struct Candidate {
  double key;
  int64_t index;
};

struct BetterCandidate {
  __device__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return (a.key > b.key || (a.key == b.key && a.index < b.index)) ? a : b;
  }
};

struct MinIndex {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a < b ? a : b; }
};

struct MaxValue {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The float's bits as an unsigned integer in the float's order (NaN excluded; -0 is taken as
// +0 before, so that equal scores have equal keys).
__device__ __forceinline__ uint32_t ordered_bits(float value) {
  const uint32_t bits = __float_as_uint(value);
  return (bits & 0x80000000U) != 0 ? ~bits : bits | 0x80000000U;
}

// U in (0, 1) from the first 32 bits of Philox4x32-10 at counter (offset, index, row).
__device__ __forceinline__ double uniform(uint64_t seed, uint64_t offset, uint32_t index, uint32_t row) {
  const uint4 counter = make_uint4(static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), index, row);
  const uint2 key = make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<double>(curand_Philox4x32_10(counter, key).x) + 0.5) * 0x1p-32;
}

// The top_k-th largest of the row's ordered score bits (1 <= top_k <= vocab), by digits from
// the most significant: each pass counts the keys that share the digits found so far, and the
// first warp finds the digit where the count from the top reaches what is still wanted.
template <typename Score>
__device__ uint32_t kth_largest_bits(const Score& score_bits, int64_t vocab, int64_t top_k) {
  __shared__ uint32_t histogram[kDigits];
  __shared__ uint32_t found_digit;
  __shared__ int64_t still_wanted;
  uint32_t prefix = 0, mask = 0;
  int64_t wanted = top_k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = static_cast<int>(threadIdx.x); d < kDigits; d += kThreads) histogram[d] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const uint32_t bits = score_bits(i);
      if ((bits & mask) == prefix) atomicAdd(&histogram[(bits >> shift) & 0xFFU], 1U);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l holds digits 255 - 8l down to 248 - 8l: the lanes in order count from the top.
      const int lane = static_cast<int>(threadIdx.x);
      int64_t lane_count = 0;
      for (int j = 0; j < 8; ++j) lane_count += histogram[kDigits - 1 - (lane * 8 + j)];
      int64_t through = lane_count;  // an inclusive scan over the lanes
      for (int offset = 1; offset < 32; offset *= 2) {
        const int64_t other = __shfl_up_sync(0xFFFFFFFFU, through, offset);
        if (lane >= offset) through += other;
      }
      int64_t before = through - lane_count;
      if (before < wanted && wanted <= through) {  // exactly one lane
        for (int j = 0; j < 8; ++j) {
          const int digit = kDigits - 1 - (lane * 8 + j);
          if (before + histogram[digit] >= wanted) {
            found_digit = static_cast<uint32_t>(digit);
            still_wanted = wanted - before;
            break;
          }
          before += histogram[digit];
        }
      }
    }
    __syncthreads();
    prefix |= found_digit << shift;
    mask |= 0xFFU << shift;
    wanted = still_wanted;
    __syncthreads();  // the shared values are read before the next pass writes them
  }
  return prefix;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    sample_tokens_kernel(const scalar_t* __restrict__ logits, int64_t vocab, float temperature, int64_t top_k,
                         at::PhiloxCudaState philox, int64_t* __restrict__ tokens) {
  wait_for_prior_grid_and_allow_next();
  using IndexReduce = cub::BlockReduce<int64_t, kThreads>;
  using CandidateReduce = cub::BlockReduce<Candidate, kThreads>;
  using ValueReduce = cub::BlockReduce<float, kThreads>;
  __shared__ union {
    typename IndexReduce::TempStorage index;
    typename CandidateReduce::TempStorage candidate;
    typename ValueReduce::TempStorage value;
  } storage;
  __shared__ int64_t first_nan;
  __shared__ float row_largest;
  const int64_t row = blockIdx.x;
  const scalar_t* x = logits + row * vocab;

  int64_t nan_index = vocab;  // this thread's first NaN, or none
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    if (isnan(static_cast<float>(x[i]))) {
      nan_index = i;
      break;
    }
  }
  nan_index = IndexReduce(storage.index).Reduce(nan_index, MinIndex());
  if (threadIdx.x == 0) first_nan = nan_index;
  __syncthreads();
  if (first_nan < vocab) {
    if (threadIdx.x == 0) tokens[row] = first_nan;
    return;  // the whole block
  }

  Candidate best{-std::numeric_limits<double>::infinity(), vocab};
  const BetterCandidate better;
  if (temperature == 0.0F) {
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      best = better(best, Candidate{static_cast<double>(x[i]), i});
    }
  } else {
    float largest = -std::numeric_limits<float>::infinity();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) largest = fmaxf(largest, static_cast<float>(x[i]));
    largest = ValueReduce(storage.value).Reduce(largest, MaxValue());
    if (threadIdx.x == 0) row_largest = largest;
    __syncthreads();
    // Scores in float32 as the CPU's: x_i - m is +0 or below, never -0.
    const auto score = [&, m = row_largest](int64_t i) {
      const float value = static_cast<float>(x[i]);
      return value == m ? 0.0F : (value - m) / temperature;
    };
    uint32_t threshold = 0;  // every score's bits are at least this
    if (top_k > 0 && top_k < vocab) {
      threshold = kth_largest_bits([&](int64_t i) { return ordered_bits(score(i)); }, vocab, top_k);
    }
    const auto [seed, offset] = at::cuda::philox::unpack(philox);
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float s = score(i);
      if (ordered_bits(s) < threshold) continue;
      const double exponential = -log(uniform(seed, offset, static_cast<uint32_t>(i), static_cast<uint32_t>(row)));
      best = better(best, Candidate{static_cast<double>(s) - log(exponential), i});
    }
  }
  const Candidate chosen = CandidateReduce(storage.candidate).Reduce(best, better);
  // A row of -inf keys (every score -inf) keeps index `vocab` only if no thread saw a score:
  // never, vocab >= 1; equal keys resolve to the smallest index.
  if (threadIdx.x == 0) tokens[row] = chosen.index;
}

at::Tensor sample_tokens_cuda(const at::Tensor& logits, double temperature, int64_t top_k,
                              std::optional<at::Generator> generator) {
  check_sample_tokens_args(kOp, logits, temperature, top_k);
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const auto rows = logits.size(0), vocab = logits.size(1);
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max() && vocab <= std::numeric_limits<uint32_t>::max(), kOp,
              ": at most 2^31 - 1 rows of at most 2^32 - 1 logits, got ", logits.sizes());
  const auto x = logits.contiguous();
  auto tokens = at::empty({rows}, x.options().dtype(at::kLong));
  at::PhiloxCudaState philox;
  if (temperature > 0) {
    auto* state = at::get_generator_or_default<at::CUDAGeneratorImpl>(
        generator, at::cuda::detail::getDefaultCUDAGenerator(logits.device().index()));
    const std::lock_guard<std::mutex> lock(state->mutex_);
    philox = state->philox_cuda_state(4);  // one counter a call: the offset moves by the minimum
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sample_tokens_cuda", [&] {
    launch_dependent(sample_tokens_kernel<scalar_t>, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0,
                     at::cuda::getCurrentCUDAStream(), x.const_data_ptr<scalar_t>(), vocab,
                     static_cast<float>(temperature), top_k, philox, tokens.mutable_data_ptr<int64_t>());
  });
  return tokens;
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CUDA, m) {
  m.impl("sample_tokens", &sample_tokens_cuda);
}

}  // namespace bittorch::ops::cuda
