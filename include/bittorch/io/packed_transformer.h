#pragma once

// A TransformerLM from a packed model file, built from the file alone.

#include <bittorch/export.h>
#include <bittorch/nn/modules/transformer.h>

#include <c10/core/Device.h>

#include <string>

namespace bittorch::io {

/// The TransformerLM a file written by save_packed holds, on `device` in eval mode: read and
/// checked once, then built straight from its records (the options the root records, the
/// projections as the file stores them, packed or full precision; no other model is made on
/// the way), in about the memory of the file plus the model.
///
/// Its embedding, norms and head keep the file's dtype on a CUDA device (bfloat16 as
/// bittorch-lm exports; the packed projections compute in their input's dtype); on the CPU
/// they are widened to float32 (exact), whose kernels compute in float32 anyway. A file
/// whose records do not make a TransformerLM is a c10::Error naming the file and the module.
BITTORCH_API nn::TransformerLM load_packed_transformer(const std::string& path, c10::Device device = c10::kCPU);

}  // namespace bittorch::io

namespace bittorch {
using io::load_packed_transformer;
}  // namespace bittorch
