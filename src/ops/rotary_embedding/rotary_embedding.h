#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <tuple>

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
/// for float64 inputs, else float32), and the outputs: rotated_query and rotated_key where
/// given (the inputs' shapes and dtype, head dimension contiguous), else from rotary_output_like.
struct RotaryOperands {
  at::Tensor query, key, cos, signed_sin, rotated_query, rotated_key;
};
RotaryOperands rotary_operands(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& cos,
                               const at::Tensor& signed_sin, const at::Tensor& rotated_query = {},
                               const at::Tensor& rotated_key = {});

/// The [batch, heads, positions, head_size] views of the query, key and value heads of
/// `joined` [batch, positions, (query_heads + 2 key_heads) * head_size] (in that order).
struct JoinedHeads {
  at::Tensor query, key, value;
};
JoinedHeads joined_heads(const at::Tensor& joined, int64_t query_heads, int64_t key_heads, int64_t head_size);

/// An uninitialized [batch, heads, positions, head_size] output laid out [batch, positions,
/// heads, head_size] (as a projection's output split into heads), with `like`'s options.
at::Tensor joined_heads_output(const at::Tensor& like, int64_t batch, int64_t heads, int64_t positions,
                               int64_t head_size);

/// rotary_embedding_split's checks: joined [batch, positions, width] with width = (query_heads
/// + 2 key_heads) * head_size for the tables' head_size, and its query and key heads as
/// check_rotary_embedding_args takes them. Returns joined's heads (joined_heads).
JoinedHeads check_rotary_split_args(const char* op, const at::Tensor& joined, int64_t query_heads,
                                    const at::Tensor& cos, const at::Tensor& signed_sin);

/// _rotary_embedding_split_backward's checks: grad_query and grad_key as
/// check_rotary_embedding_args takes them, grad_value like grad_key.
void check_rotary_split_backward_args(const char* op, const at::Tensor& grad_query, const at::Tensor& grad_key,
                                      const at::Tensor& grad_value, const at::Tensor& cos,
                                      const at::Tensor& signed_sin);

/// A backend's rotation of query and key into the given outputs (sign -1: the inverse), and
/// copy of value (the key's shape, head dimension contiguous) into value_out.
using RotateInto =
    std::function<void(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, double sign,
                       const at::Tensor& rotated_query, const at::Tensor& rotated_key, const at::Tensor& value_out)>;

/// rotary_embedding_split and its backward on a backend, through its rotation: the forward
/// rotates the query and key heads of `joined` into new tensors and copies the value heads; the
/// backward rotates the query and key gradients back into their columns of the joined gradient
/// and copies the value gradient into its own.
std::tuple<at::Tensor, at::Tensor, at::Tensor> rotary_split_forward(const char* op, const at::Tensor& joined,
                                                                    int64_t query_heads, const at::Tensor& cos,
                                                                    const at::Tensor& signed_sin,
                                                                    const RotateInto& rotate);
at::Tensor rotary_split_backward(const char* op, const at::Tensor& grad_query, const at::Tensor& grad_key,
                                 const at::Tensor& grad_value, const at::Tensor& cos, const at::Tensor& signed_sin,
                                 const RotateInto& rotate);

}  // namespace bittorch::ops
