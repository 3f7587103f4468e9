#pragma once

#include <ATen/core/Tensor.h>

namespace bittorch::ops {

/// query and key 4-D [batch, heads, positions, head_size] of one floating dtype rotary_embedding
/// takes, on one device, with the same positions and an even head size; cos and signed_sin
/// floating [positions, head_size] on that device.
void check_rotary_embedding_args(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                                 const at::Tensor& signed_sin);

/// An uninitialized output for the rotation of `input`: its layout where that keeps the head
/// dimension contiguous, else contiguous. Every backend (Meta too) allocates through this.
at::Tensor rotary_output_like(const at::Tensor& input);

/// What the CPU and CUDA kernels read and write, after check_rotary_embedding_args: the inputs
/// with a contiguous head dimension, the tables contiguous in their arithmetic's dtype (float64
/// for float64 inputs, else float32), and the outputs from rotary_output_like.
struct RotaryOperands {
  at::Tensor query, key, cos, signed_sin, rotated_query, rotated_key;
};
RotaryOperands rotary_operands(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                               const at::Tensor& signed_sin);

}  // namespace bittorch::ops
