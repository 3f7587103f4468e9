#pragma once

// bittorch::linear_cross_entropy: a classifier's projection and its cross-entropy loss in
// one op, computed in chunks of rows so that the logits of the whole batch never exist at
// once (schema in src/ops/linear_cross_entropy/linear_cross_entropy.cpp).

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace bittorch::ops {

/// The mean over the rows whose target is not `ignore_index` of
/// logsumexp(x W^T) - (x W^T)[target], for input x [*, K], weight W [V, K] and int64 targets
/// [*] (each in [0, V) or ignore_index): cross_entropy(linear(input, weight), target) without
/// a bias. The logits are made `chunk_rows` rows at a time (0: as many rows as keep a chunk's
/// logits near 64 MiB), softmax in float32 (float64 for float64 inputs); with gradients on,
/// each chunk's gradients are made in the forward from its logits, so the backward only
/// scales them. The loss is float32 (float64); no valid target gives NaN, as PyTorch's mean
/// cross-entropy does. Input and weight share a dtype (float32, float64, float16, bfloat16;
/// under CUDA autocast both are cast to the autocast dtype, as for a linear layer).
BITTORCH_API at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight,
                                             const at::Tensor& target, int64_t ignore_index = -100,
                                             int64_t chunk_rows = 0);

/// (loss, grad_input, grad_weight): the loss above and, when `compute_grad`, its gradients
/// with respect to input and weight (else undefined tensors). The forward the Autograd kernel
/// of linear_cross_entropy runs.
BITTORCH_API std::tuple<at::Tensor, at::Tensor, at::Tensor> _linear_cross_entropy_forward(
    const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, int64_t ignore_index,
    int64_t chunk_rows, bool compute_grad);

}  // namespace bittorch::ops
