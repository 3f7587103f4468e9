#include "io/packed_file.h"

#include <bittorch/io/files.h>

#include <c10/util/Exception.h>

namespace bittorch::io {

PackedFile read_packed_file(const std::string& path, const char* caller) {
  PackedFile file;
  try {
    file.bytes = read_regular_file(path);
    file.records = parse_packed_file(file.bytes);
  } catch (const PackedFileError& error) {
    TORCH_CHECK(false, caller, ": '", path, "': ", error.what());
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, caller, ": ", error.what_without_backtrace());
  }
  return file;
}

std::string shown(const std::string& module_path) {
  return module_path.empty() ? "(root)" : module_path;
}

}  // namespace bittorch::io
