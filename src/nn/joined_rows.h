#pragma once

// The layer behind nn::fuse_projections: projections that read the same input joined into one
// of their rows concatenated, the parts' tensors re-pointed to views of the joined layer's.

#include <torch/nn/modules/container/any.h>

#include <optional>
#include <vector>

namespace bittorch::nn::detail {

/// A layer computing `parts`' outputs side by side, or nullopt when they cannot be joined (not
/// all PackedTernaryLinear alike or all torch::nn::Linear alike, on one device). On success each
/// part's weight, scale and bias are views of the joined layer's.
std::optional<torch::nn::AnyModule> join_rows(const std::vector<torch::nn::AnyModule>& parts);

/// Whether every part's tensors are still views of `joined`'s (not moved, not replaced).
bool still_joined(const torch::nn::AnyModule& joined, const std::vector<torch::nn::AnyModule>& parts);

/// Each part's output width (its rows), in order.
std::vector<int64_t> output_widths(const std::vector<torch::nn::AnyModule>& parts);

}  // namespace bittorch::nn::detail
