#pragma once

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>

namespace bittorch::nn {

/// Module::load for the layers whose options fix their tensors' shapes: torch's own load
/// replaces each parameter and buffer with the stored tensor whatever its shape, which would
/// leave options and tensors disagreeing. Every stored tensor's shape is checked first
/// (a c10::Error from `layer` naming the tensor and both shapes; the module is left as it
/// was), then the tensors are loaded.
void load_checking_shapes(torch::nn::Module& module, torch::serialize::InputArchive& archive, const char* layer);

}  // namespace bittorch::nn
