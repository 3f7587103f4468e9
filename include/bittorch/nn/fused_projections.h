#pragma once

// Projections that read the same input, computed as one layer for inference: each attention's
// q, k and v, and a gated MLP's gate and up. One kernel (and one quantization of the input, with
// 8-bit activations) instead of three, over a matrix with more rows to spread over the GPU.
//
//   nn::fuse_projections(*model);  // nn::Decoder does it for the model it decodes
//
// The joined layer holds the parts' rows concatenated, and the parts' weights become views of
// it: the weights are held once, and the parts still read (saving, packing, exporting) and
// compute as before. Joined when every part of a group is a PackedTernaryLinear (alike in
// in_features, bias and quantization) or a torch::nn::Linear (alike in dtype and bias), on one
// device. The joined layer computes only with gradients off (training goes through the parts).
// Moving the model (to()) or replacing a projection undoes the join: the parts compute alone
// again until fuse_projections runs once more.

#include <bittorch/export.h>

#include <torch/nn/module.h>

#include <cstdint>

namespace bittorch::nn {

/// Joins every group of projections in `model` that can be (see above); returns the number of
/// groups joined, counting those that already were. Idempotent.
BITTORCH_API int64_t fuse_projections(torch::nn::Module& model);

}  // namespace bittorch::nn
