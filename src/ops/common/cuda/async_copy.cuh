#pragma once

// Asynchronous copies from global to shared memory (cp.async, sm_80 and later), the pipelines
// of the packed kernels: a thread issues copies, commits them as a group, and later waits until
// at most kPending of its groups are in flight (its own copies are then visible to it; other
// threads' after a barrier).

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/macros/Macros.h>

#include <array>
#include <cstdint>
#include <mutex>

namespace bittorch::ops::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 (or 4) bytes from global to shared memory, or zeros where !valid (src is then not read).
__device__ __forceinline__ void copy_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void copy_async_4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(valid ? 4 : 0)
               : "memory");
}

// An L2 policy for data read once (a layer's codes): its lines are evicted first, so that the
// data read again (the input rows) stays.
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// copy_async_16 under an L2 policy (evict_first_policy).
__device__ __forceinline__ void copy_async_16(void* dst, const void* src, bool valid, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(shared_address(dst)),
               "l"(src), "r"(valid ? 16 : 0), "l"(policy)
               : "memory");
}

__device__ __forceinline__ void commit_copies() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most kPending groups of copies of this thread are in flight.
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Lets `kernel` launch with `shared_bytes` of dynamic shared memory beyond the default 48 KB:
// once per device and kernel, not on every call.
template <auto kernel>
void opt_in_shared_memory(int shared_bytes) {
  static std::array<std::once_flag, C10_COMPILE_TIME_MAX_GPUS> opted_in;
  std::call_once(opted_in.at(static_cast<size_t>(c10::cuda::current_device())), [&] {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
  });
}

}  // namespace bittorch::ops::cuda
