#pragma once

// Packed model files (docs/packed-format.md): ternary layers at 1.6 bits per weight, the
// full-precision layers around them in float32, in any tree of Sequentials and modules of
// your own.

#include <bittorch/export.h>

#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <string>
#include <vector>

namespace bittorch::io {

/// Writes `model` as a packed model file (format version 3), through write_file_atomically. Every module of the tree
/// must be one a file holds: PackedTernaryLinear, TernaryLinear (packed on the way), Linear, Embedding (without
/// max_norm), LayerNorm, nn::RMSNorm, ReLU, GELU, SiLU, Tanh, Sigmoid, Dropout, and Sequentials or modules of
/// your own (without parameters or buffers of their own) holding them; anything else, or a
/// non-finite weight, scale or bias of a ternary layer, is a c10::Error naming the module.
/// Full-precision weights (Linear, Embedding, the norms) are stored in `full_precision_dtype`:
/// float32 (exact), float16 or bfloat16 (half the bytes; load_packed widens them to float32,
/// load_packed_transformer keeps them on a GPU); a ternary layer is 1.6 bits per weight with
/// float32 scales either way.
BITTORCH_API void save_packed(const torch::nn::Module& model, const std::string& path,
                              c10::ScalarType full_precision_dtype = c10::kFloat);
BITTORCH_API void save_packed(const torch::nn::Sequential& model, const std::string& path,
                              c10::ScalarType full_precision_dtype = c10::kFloat);

/// Reads a file written by save_packed (version 1, 2 or 3) of a Sequential of stored kinds into
/// a new Sequential on the CPU (float32, in eval mode), in about the memory of the loaded model plus
/// the file's size. A missing, non-regular (a directory, a FIFO, a device), truncated,
/// corrupted, other-version or inconsistent file, or one with non-finite scales, is a
/// c10::Error that says which; so is a file holding a module of your own (its forward is not
/// in the file: build the model and use load_packed_into).
BITTORCH_API torch::nn::Sequential load_packed(const std::string& path);

/// Reads a file written by save_packed into `model`, which must have the tree the file
/// describes (the same paths, kinds and options; build it, then convert_to_ternary and pack as
/// the saved one was): each module's tensors are copied in, converted to the model's devices and
/// dtypes. Any difference is a c10::Error naming the module, and leaves `model` as it was.
BITTORCH_API void load_packed_into(torch::nn::Module& model, const std::string& path);

/// The numbers a file stores for the module at `module_path` ("" : the root): a module of your
/// own that implements nn::PackedNumbers (TransformerLM: its sizes and quantization), or a
/// stored kind's options (docs/packed-format.md). A missing module is a c10::Error.
struct PackedModuleNumbers {
  std::vector<int64_t> ints;
  std::vector<double> reals;
};
BITTORCH_API PackedModuleNumbers read_packed_numbers(const std::string& path, const std::string& module_path = "");

}  // namespace bittorch::io

namespace bittorch {
using io::load_packed;
using io::load_packed_into;
using io::PackedModuleNumbers;
using io::read_packed_numbers;
using io::save_packed;
}  // namespace bittorch
