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

/// The dtype the tables are read in: float64 for float64 inputs, else float32.
at::ScalarType rotary_table_dtype(const at::Tensor& input);

}  // namespace bittorch::ops
