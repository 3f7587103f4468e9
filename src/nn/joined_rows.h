#pragma once

// Projections that read the same input, computed as one of their rows stacked: for inference
// the layer behind nn::fuse_projections, the parts' tensors re-pointed to views of the joined
// layer's; for training (and any call while not so joined) one product of the parts' own
// tensors stacked per call.

#include <torch/nn/modules/container/any.h>

#include <optional>
#include <vector>

namespace bittorch::nn::detail {

/// A layer computing `parts`' outputs side by side, or nullopt when they cannot be joined (not
/// all PackedTernaryLinear alike or all torch::nn::Linear alike, on one device). On success each
/// part's weight, scale and bias are views of the joined layer's.
std::optional<torch::nn::AnyModule> join_rows(const std::vector<torch::nn::AnyModule>& parts);

/// The parts' outputs for input `x` side by side (in order, in the last dimension) from one
/// product of their stacked rows, with gradients for each part's weight and bias: TernaryLinear
/// alike (TernaryLinearImpl::forward_joined) or torch::nn::Linear alike (their weights
/// concatenated); nullopt when the parts are not alike. Training's join: the parts keep their
/// own tensors.
std::optional<at::Tensor> joined_output(const std::vector<torch::nn::AnyModule>& parts, const at::Tensor& x);
/// Whether every part's tensors are still views of `joined`'s (not moved, not replaced).
bool still_joined(const torch::nn::AnyModule& joined, const std::vector<torch::nn::AnyModule>& parts);

/// Each part's output width (its rows), in order.
std::vector<int64_t> output_widths(const std::vector<torch::nn::AnyModule>& parts);

}  // namespace bittorch::nn::detail
