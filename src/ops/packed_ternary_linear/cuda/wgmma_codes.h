#pragma once

// The packed codes in the order the wgmma variant's threads read them (wgmma.cu): each
// thread's values of a 16-row x 8v-column block of the operand contiguous, so that a thread
// loads a k-block's codes from shared memory in one access and widens them in order, with
// no bits moved between loads. v is the mma operand's values per 32-bit register (2 for
// 16-bit rows, 4 for e4m3 ones). Code (m, k) of an [M, K] matrix goes to element
//   128v * (m / 16 + (M / 16) * (k / 8v)) + 4v * t + value,
//   t = 4 (m % 8) + (k % 4v) / v,
//   value = k % v + v ((m % 16) / 8) + 2v ((k % 8v) / 4v),
// where t is the lane of the wgmma A fragment (mma.sync's m16n8k16 / m16n8k32 A layout) that
// holds it, and M is out_features rounded up to a multiple of 16 (the rows past out_features
// zero codes). Elements are 2-bit two's complement, 16 a 32-bit word, as in the packed format.

#include <ATen/core/Tensor.h>

namespace bittorch::ops::cuda {

/// The features of the ordered codes: out_features rounded up to a multiple of 16.
constexpr int64_t fragment_ordered_features(int64_t out_features) {
  return (out_features + 15) / 16 * 16;
}

/// The codes of `packed` (int32 [out_features, words], CUDA; words * 16 a multiple of
/// 8 * values_per_register) in that order, [fragment_ordered_features(out_features), words].
/// Kept per packed tensor while it lives; ordered again, into the same memory, at the first call
/// after the codes change in place (their version counter). Made in every call for an inference
/// tensor (no version counter), and inside a CUDA graph's capture where none is kept (the kernel
/// that orders them then runs at each replay). A graph that read a kept copy reads it as the
/// last eager call left it. The copy takes as many bytes as the codes (1/8 of a BF16 weight);
/// it is freed at the first miss after its tensor is.
at::Tensor fragment_ordered_codes(const at::Tensor& packed, int values_per_register);

}  // namespace bittorch::ops::cuda
