#pragma once

// The byte format of packed model files (docs/packed-format.md, "Model files"), parsed and
// written without LibTorch, so that the parser can be fuzzed on its own under AddressSanitizer
// and UndefinedBehaviorSanitizer (tests/io/fuzz_packed_file.cpp). What a record's numbers and
// byte arrays mean for each module kind is src/io/module_codecs.cpp's business.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::io {

inline constexpr char kPackedFileMagic[8] = {'B', 'T', 'P', 'A', 'C', 'K', '\r', '\n'};
/// The version written. Version 1 (a flat list of packed layers and ReLUs) and version 2 (no
/// array dtype: float32) files are still read.
inline constexpr uint32_t kPackedFileVersion = 3;

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

/// The kinds of module a file holds (numbers as stored).
enum class ModuleKind : uint8_t {
  PackedTernaryLinear = 1,
  ReLU = 2,
  Sequential = 3,
  /// Any other module with children (a module of your own): its children are stored, it is not.
  Module = 4,
  Linear = 5,
  Embedding = 6,
  LayerNorm = 7,
  GELU = 8,
  SiLU = 9,
  Tanh = 10,
  Sigmoid = 11,
  Dropout = 12,
  RMSNorm = 13,
};
inline constexpr uint8_t kLastModuleKind = 13;

/// How a record's full-precision arrays (weights, biases, norm gains) are stored.
enum class ArrayDtype : uint8_t { Float32 = 0, Float16 = 1, BFloat16 = 2 };
inline constexpr uint8_t kLastArrayDtype = 2;

/// One module of the tree.
struct ModuleRecord {
  ModuleKind kind = ModuleKind::Module;
  /// The element type of its full-precision arrays (a packed layer's scale and bias: float32).
  ArrayDtype array_dtype = ArrayDtype::Float32;
  /// Dotted path from the root ("encoder.0.fc1"); "" for the root itself.
  std::string path;
  /// The kind's integers (shapes, flags) and real numbers (eps, p), in its own order.
  std::vector<int64_t> ints;
  std::vector<double> reals;
  /// The kind's byte arrays (codes, float32 weights): views into the bytes the record was
  /// parsed from (or, for writing, into storage the caller keeps), so that loading a model
  /// never holds its data twice.
  std::vector<std::string_view> blobs;
};

/// The path of a record's parent: "encoder.0" for "encoder.0.fc1", "" for a child of the root.
std::string parent_path(const std::string& path);

/// The file's bytes: magic, version, the records, then the CRC-32 of everything before it.
/// Records come parents first, the root first. `version` 2 (no array dtypes, every array
/// float32) is there for tests of older files.
std::string write_packed_file(const std::vector<ModuleRecord>& records, uint32_t version = kPackedFileVersion);

/// The records of a version 1, 2 or 3 file; version 1's flat list comes back as a Sequential root
/// and its children. Any malformation (truncation, bad magic, version, counts, lengths, kinds,
/// a path whose parent comes nowhere before it, a repeated path, checksum, trailing bytes) is a
/// PackedFileError naming it. A file whose checksum fails is reported as truncated
/// (TruncatedFileError) where its contents run past its end, else as corrupted. Reads nothing
/// outside `bytes`.
std::vector<ModuleRecord> parse_packed_file(std::string_view bytes);

}  // namespace bittorch::io
