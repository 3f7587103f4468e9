#pragma once

// Programmatic dependent launch (sm_90 and later). A decode step is a chain of small kernels,
// each shorter than the gap a launch leaves between two kernels of a stream (or of a CUDA
// graph). A kernel launched with launch_dependent may be scheduled while the kernel before it
// is still running: its blocks start, and wait in wait_for_prior_grid_and_allow_next() until
// that kernel has completed and its writes are visible. Every kernel launched so calls it
// first, before it reads or writes any memory (except constants written before the chain
// began, such as a layer's weights, which it may load or prefetch before), so the chain
// computes exactly as with plain launches; only the launch, scheduling and those loads
// overlap. It then lets the next kernel be scheduled.
// Elsewhere (older GPUs, BITTORCH_NO_DEPENDENT_LAUNCH set) the launch is a plain one.

#include "ops/common/cuda/device.h"

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

namespace bittorch::ops::cuda {

__device__ __forceinline__ void wait_for_prior_grid_and_allow_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks the L2 to fetch [begin, begin + bytes) from memory, the block's threads a 128-byte line
// each in turn: a hint that returns nothing, which a kernel may issue for constants (a layer's
// weights, a KV cache's earlier rows) before wait_for_prior_grid_and_allow_next().
__device__ __forceinline__ void prefetch_to_l2(const void* begin, int64_t bytes) {
  const auto first = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t{127};
  const auto end = reinterpret_cast<uintptr_t>(begin) + static_cast<uintptr_t>(bytes);
  for (uintptr_t line = first + uintptr_t{threadIdx.x} * 128; line < end; line += uintptr_t{blockDim.x} * 128) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(line));
  }
}

/// kernel<<<grid, block, shared_bytes, stream>>>(args...), as a programmatic dependent where
/// dependent_launch_enabled(); the kernel must start with wait_for_prior_grid_and_allow_next().
template <typename... Parameters, typename... Arguments>
void launch_dependent(void (*kernel)(Parameters...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                      Arguments&&... arguments) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  if (dependent_launch_enabled()) {
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Arguments>(arguments)...));
}

}  // namespace bittorch::ops::cuda
