#pragma once

// The byte format of packed model files (docs/packed-format.md, "Model files"), parsed and
// written without LibTorch, so that the parser can be fuzzed on its own under AddressSanitizer
// and UndefinedBehaviorSanitizer (tests/io/fuzz_packed_file.cpp).

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::io {

inline constexpr char kPackedFileMagic[8] = {'B', 'T', 'P', 'A', 'C', 'K', '\r', '\n'};
inline constexpr uint32_t kPackedFileVersion = 1;

/// Every way a packed file can be malformed.
class PackedFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file that ends before its contents do.
class TruncatedFileError : public PackedFileError {
 public:
  using PackedFileError::PackedFileError;
};

enum class ModuleKind : uint8_t { PackedTernaryLinear = 1, ReLU = 2 };

struct PackedModuleRecord {
  ModuleKind kind = ModuleKind::ReLU;
  std::string name;
  // PackedTernaryLinear only:
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t activation_bits = 0;
  /// ceil(in * out / 5) bytes, five codes per byte: a view into the bytes the record was
  /// parsed from (or, for writing, into storage the caller keeps), so that loading a model
  /// never holds its codes twice.
  std::string_view trits;
  std::vector<float> scale;    // [out]
  std::vector<float> bias;     // [out] or empty
};

/// The file's bytes: magic, version, the records, then the CRC-32 of everything before it.
std::string write_packed_file(const std::vector<PackedModuleRecord>& records);

/// The records of a file; any malformation (truncation, bad magic, version, sizes, kinds,
/// checksum, non-finite scales or biases, trailing bytes) is a PackedFileError naming it. A
/// file whose checksum fails is reported as truncated (TruncatedFileError) where its contents
/// run past its end, else as corrupted. Reads nothing outside `bytes`.
std::vector<PackedModuleRecord> parse_packed_file(std::string_view bytes);

}  // namespace bittorch::io
