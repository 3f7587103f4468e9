#pragma once

// How each kind of module is stored in a packed model file: its numbers (describe), its byte
// arrays (arrays), the module its numbers describe (make) and its arrays read into a module of
// those numbers (load). To store a new kind: a number
// in ModuleKind (packed_file_format.h), a ModuleCodec in module_codecs.cpp, a row in
// docs/packed-format.md, and a round trip in tests/io/test_packed_file.cpp.

#include "io/packed_file_format.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>

#include <deque>
#include <string>

namespace bittorch::io {

struct ModuleCodec {
  ModuleKind kind;
  /// The kind's name in messages: "Linear".
  const char* name;
  /// Whether `module` is of this kind.
  bool (*matches)(const torch::nn::Module& module);
  /// The record's ints and reals for `module`: they fix its shapes and arithmetic, so two
  /// modules of a kind with equal numbers hold tensors of equal shapes. `path` names it in
  /// errors.
  void (*describe)(const torch::nn::Module& module, const std::string& path, ModuleRecord& record);
  /// The record's byte arrays, kept in `storage` (a deque, so that the views into
  /// it stay valid as it grows).
  void (*arrays)(const torch::nn::Module& module, const std::string& path, ModuleRecord& record,
                 std::deque<std::string>& storage);
  /// The module the record's numbers describe, on the CPU in float32, its tensors not yet
  /// loaded. Numbers that describe none are a c10::Error.
  torch::nn::AnyModule (*make)(const ModuleRecord& record);
  /// Copies the record's arrays into `module`, a module of this kind with the record's numbers
  /// (same_numbers), converted to its tensors' devices and dtypes. An array of the wrong size
  /// (or a non-finite scale or bias of a packed layer) is a c10::Error, and leaves `module` as
  /// it was.
  void (*load)(const ModuleRecord& record, torch::nn::Module& module);
};

/// The codec of `module`'s kind, or nullptr.
const ModuleCodec* codec_for(const torch::nn::Module& module);
/// The codec of a stored kind, or nullptr for containers (Sequential, Module).
const ModuleCodec* codec_for(ModuleKind kind);
/// The names of every kind a file holds, for messages.
std::string stored_kind_names();

/// The module a record describes, loaded (make, then load). Errors as those.
torch::nn::AnyModule create(const ModuleRecord& record);

/// Whether a module's record (`model`, from describe) and a file's record have the same kind
/// and numbers. Version 1 records of packed layers carry the first four integers only.
bool same_numbers(const ModuleRecord& model, const ModuleRecord& file);

/// The element type of a record's full-precision arrays, as a tensor dtype.
at::ScalarType scalar_type_of(ArrayDtype dtype);

}  // namespace bittorch::io
