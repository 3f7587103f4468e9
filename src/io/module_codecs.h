#pragma once

// How each kind of module is stored in a packed model file: its numbers (describe), its byte
// arrays (arrays) and the module rebuilt from a record (create). To store a new kind: a number
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
  /// The module a record describes, on the CPU in float32, its data copied from the arrays. An
  /// inconsistent record is a c10::Error.
  torch::nn::AnyModule (*create)(const ModuleRecord& record);
};

/// The codec of `module`'s kind, or nullptr.
const ModuleCodec* codec_for(const torch::nn::Module& module);
/// The codec of a stored kind, or nullptr for containers (Sequential, Module).
const ModuleCodec* codec_for(ModuleKind kind);
/// The names of every kind a file holds, for messages.
std::string stored_kind_names();

}  // namespace bittorch::io
