#pragma once

// Activation checkpointing: a piece of a model whose activations are not kept for the
// backward but recomputed there, trading a second forward for memory.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace bittorch::nn {

using CheckpointedFunction = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& inputs)>;

/// run(inputs), keeping for the backward only `inputs` (not what run makes on the way): with
/// gradients on, run goes without them and the outputs get a node that, in the backward, runs
/// it again with gradients (under the autocast state of the forward) and back-propagates
/// through that, accumulating into the parameters run reads and returning the inputs'
/// gradients. The gradients are those of run(inputs) with gradients on, up to the order of
/// floating-point sums. run must compute the same outputs each time (no randomness; its
/// parameters unchanged until the backward) and return new tensors (not views of its
/// inputs). With gradients off it is run(inputs).
BITTORCH_API std::vector<at::Tensor> checkpointed(const CheckpointedFunction& run,
                                                  const std::vector<at::Tensor>& inputs);

}  // namespace bittorch::nn
