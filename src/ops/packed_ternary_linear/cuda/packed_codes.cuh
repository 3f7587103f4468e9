#pragma once

// The 2-bit codes as the CUDA kernels of packed_ternary_linear read them
// (docs/packed-format.md), and helpers every variant shares.

#include <cstdint>

namespace bittorch::ops::cuda {

// The code in bits 2i, 2i + 1 of `word`, sign-extended: 00 -> 0, 01 -> 1, 11 -> -1.
__device__ __forceinline__ float code_at(uint32_t word, int i) {
  return static_cast<float>(static_cast<int32_t>(word << (30 - 2 * i)) >> 30);
}

// 16 elements, stored with one 16-byte-aligned vector write per 16 bytes.
template <typename T>
struct alignas(16) Pack16 {
  T v[16];
};

}  // namespace bittorch::ops::cuda
