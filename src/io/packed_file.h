#pragma once

// A packed model file read once: its bytes and the records viewing them, for the loaders of
// packed_model.cpp and packed_transformer.cpp.

#include "io/packed_file_format.h"

#include <string>
#include <vector>

namespace bittorch::io {

struct PackedFile {
  std::string bytes;
  /// Their arrays are views into `bytes`: the file, 1.6 bits per ternary weight, and the
  /// modules' tensors are all loading takes.
  std::vector<ModuleRecord> records;
};

/// The file at `path`, read and parsed (once); any error is a c10::Error naming `caller` and
/// the file.
PackedFile read_packed_file(const std::string& path, const char* caller);

/// A module path for messages: "(root)" for "".
std::string shown(const std::string& module_path);

}  // namespace bittorch::io
