#include "io/packed_file_format.h"

#include "io/crc32.h"

#include <cstring>
#include <set>

namespace bittorch::io {
namespace {

// Limits that keep a corrupted size field from asking for absurd allocations.
constexpr uint32_t kMaxModules = 1u << 16;
constexpr uint32_t kMaxPathBytes = 1u << 12;
constexpr uint32_t kMaxNumbers = 64;
constexpr uint32_t kMaxBlobs = 8;
constexpr int64_t kMaxFeatures = int64_t{1} << 24;
constexpr int64_t kMaxWeights = int64_t{1} << 34;
constexpr uint8_t kScaleDtypeFloat32 = 1;

class Writer {
 public:
  template <typename T>
  void put(T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    out_.append(raw, sizeof(T));
  }
  void put_bytes(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  T get(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }
  const char* take(uint64_t size, const char* what) {
    if (size > bytes_.size() - offset_) {
      throw TruncatedFileError(std::string("truncated file: ") + what + " runs past the end (byte " +
                               std::to_string(offset_) + " of " + std::to_string(bytes_.size()) + ")");
    }
    const char* data = bytes_.data() + offset_;
    offset_ += size;
    return data;
  }
  std::string_view view(uint64_t size, const char* what) { return {take(size, what), static_cast<size_t>(size)}; }
  size_t remaining() const { return bytes_.size() - offset_; }

 private:
  std::string_view bytes_;
  size_t offset_ = 0;
};

// Versions 2 and 3: each record is path, kind, (version 3: array dtype,) its integers, reals
// and byte arrays.
std::vector<ModuleRecord> parse_records(std::string_view records_bytes, uint32_t version) {
  Reader r(records_bytes);
  const auto count = r.get<uint32_t>("module count");
  if (count == 0 || count > kMaxModules) throw PackedFileError("implausible module count " + std::to_string(count));
  std::vector<ModuleRecord> records;
  std::set<std::string> paths;
  for (uint32_t i = 0; i < count; ++i) {
    ModuleRecord m;
    const auto path_size = r.get<uint32_t>("path length");
    if (path_size > kMaxPathBytes)
      throw PackedFileError("module " + std::to_string(i) + " has an implausible path length");
    m.path.assign(r.view(path_size, "module path"));
    const std::string name = "module '" + m.path + "'";
    if ((i == 0) != m.path.empty()) throw PackedFileError(name + ": the root, and only the root, has the empty path");
    if (i > 0 && paths.count(parent_path(m.path)) == 0) throw PackedFileError(name + " comes before its parent");
    if (!paths.insert(m.path).second) throw PackedFileError(name + " appears twice");
    const auto kind = r.get<uint8_t>("module kind");
    if (kind == 0 || kind > kLastModuleKind) throw PackedFileError(name + " has unknown kind " + std::to_string(kind));
    m.kind = static_cast<ModuleKind>(kind);
    if (version >= 3) {
      const auto dtype = r.get<uint8_t>("array dtype");
      if (dtype > kLastArrayDtype) throw PackedFileError(name + " has unknown array dtype " + std::to_string(dtype));
      m.array_dtype = static_cast<ArrayDtype>(dtype);
    }
    const auto ints = r.get<uint32_t>("integer count");
    if (ints > kMaxNumbers) throw PackedFileError(name + " has an implausible integer count");
    for (uint32_t k = 0; k < ints; ++k) m.ints.push_back(r.get<int64_t>("integer"));
    const auto reals = r.get<uint32_t>("real count");
    if (reals > kMaxNumbers) throw PackedFileError(name + " has an implausible real count");
    for (uint32_t k = 0; k < reals; ++k) m.reals.push_back(r.get<double>("real"));
    const auto blobs = r.get<uint32_t>("array count");
    if (blobs > kMaxBlobs) throw PackedFileError(name + " has an implausible array count");
    for (uint32_t k = 0; k < blobs; ++k) m.blobs.push_back(r.view(r.get<uint64_t>("array length"), "array"));
    records.push_back(std::move(m));
  }
  if (r.remaining() != 0)
    throw PackedFileError(std::to_string(r.remaining()) + " unexpected bytes after the last module");
  return records;
}

// Version 1: a flat list of PackedTernaryLinear (in, out, activation_bits, bias flag, scale
// dtype, codes, scales, biases) and ReLU records, read as the children of a Sequential.
std::vector<ModuleRecord> parse_records_v1(std::string_view records_bytes) {
  Reader r(records_bytes);
  const auto count = r.get<uint32_t>("module count");
  if (count > kMaxModules) throw PackedFileError("implausible module count " + std::to_string(count));
  std::vector<ModuleRecord> records(1);
  records[0].kind = ModuleKind::Sequential;
  std::set<std::string> paths;
  for (uint32_t i = 0; i < count; ++i) {
    ModuleRecord m;
    const auto kind = r.get<uint8_t>("module kind");
    if (kind != static_cast<uint8_t>(ModuleKind::PackedTernaryLinear) &&
        kind != static_cast<uint8_t>(ModuleKind::ReLU)) {
      throw PackedFileError("module " + std::to_string(i) + " has unknown kind " + std::to_string(kind));
    }
    m.kind = static_cast<ModuleKind>(kind);
    const auto name_size = r.get<uint32_t>("name length");
    if (name_size > kMaxPathBytes)
      throw PackedFileError("module " + std::to_string(i) + " has an implausible name length");
    m.path.assign(r.view(name_size, "module name"));
    if (m.path.empty() || m.path.find('.') != std::string::npos || !paths.insert(m.path).second) {
      throw PackedFileError("module " + std::to_string(i) + " has an invalid or repeated name '" + m.path + "'");
    }
    if (m.kind == ModuleKind::PackedTernaryLinear) {
      const auto in_features = r.get<int64_t>("in_features");
      const auto out_features = r.get<int64_t>("out_features");
      if (in_features < 1 || out_features < 1 || in_features > kMaxFeatures || out_features > kMaxFeatures ||
          in_features * out_features > kMaxWeights) {
        throw PackedFileError("module '" + m.path + "' has an invalid shape " + std::to_string(out_features) + "x" +
                              std::to_string(in_features));
      }
      const auto activation_bits = r.get<uint8_t>("activation_bits");
      const auto has_bias = r.get<uint8_t>("bias flag");
      if (has_bias > 1) throw PackedFileError("module '" + m.path + "' has an invalid bias flag");
      const auto scale_dtype = r.get<uint8_t>("scale dtype");
      if (scale_dtype != kScaleDtypeFloat32) {
        throw PackedFileError("module '" + m.path + "' has scale dtype " + std::to_string(scale_dtype) +
                              ", which this version does not read (1: float32)");
      }
      // As version 2 stores them (module_codecs.cpp): in, out, bias, activation_bits, then
      // the quantization version 1 did not record, at its defaults.
      m.ints = {in_features, out_features, has_bias, activation_bits};
      const auto rows = static_cast<uint64_t>(out_features);
      m.blobs.push_back(r.view((static_cast<uint64_t>(in_features) * rows + 4) / 5, "ternary codes"));
      m.blobs.push_back(r.view(rows * sizeof(float), "scale"));
      if (has_bias == 1) m.blobs.push_back(r.view(rows * sizeof(float), "bias"));
    }
    records.push_back(std::move(m));
  }
  if (r.remaining() != 0)
    throw PackedFileError(std::to_string(r.remaining()) + " unexpected bytes after the last module");
  return records;
}

}  // namespace

std::string parent_path(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

std::string write_packed_file(const std::vector<ModuleRecord>& records, uint32_t version) {
  if (version != 2 && version != kPackedFileVersion) {
    throw PackedFileError("cannot write format version " + std::to_string(version));
  }
  Writer w;
  w.put_bytes(kPackedFileMagic, sizeof(kPackedFileMagic));
  w.put<uint32_t>(version);
  w.put<uint32_t>(static_cast<uint32_t>(records.size()));
  for (const auto& r : records) {
    w.put<uint32_t>(static_cast<uint32_t>(r.path.size()));
    w.put_bytes(r.path.data(), r.path.size());
    w.put<uint8_t>(static_cast<uint8_t>(r.kind));
    if (version >= 3) {
      w.put<uint8_t>(static_cast<uint8_t>(r.array_dtype));
    } else if (r.array_dtype != ArrayDtype::Float32) {
      throw PackedFileError("version 2 files hold float32 arrays only");
    }
    w.put<uint32_t>(static_cast<uint32_t>(r.ints.size()));
    for (const int64_t v : r.ints) w.put<int64_t>(v);
    w.put<uint32_t>(static_cast<uint32_t>(r.reals.size()));
    for (const double v : r.reals) w.put<double>(v);
    w.put<uint32_t>(static_cast<uint32_t>(r.blobs.size()));
    for (const auto& blob : r.blobs) {
      w.put<uint64_t>(blob.size());
      w.put_bytes(blob.data(), blob.size());
    }
  }
  w.put<uint32_t>(crc32_of(w.bytes()));
  return std::move(w.bytes());
}

std::vector<ModuleRecord> parse_packed_file(std::string_view bytes) {
  if (bytes.size() < sizeof(kPackedFileMagic) + 3 * sizeof(uint32_t)) {
    throw PackedFileError("truncated file: " + std::to_string(bytes.size()) + " bytes is shorter than any header");
  }
  if (std::memcmp(bytes.data(), kPackedFileMagic, sizeof(kPackedFileMagic)) != 0) {
    throw PackedFileError("not a BitTorch packed model (bad magic)");
  }
  Reader header(bytes.substr(sizeof(kPackedFileMagic)));
  const auto version = header.get<uint32_t>("version");
  if (version < 1 || version > kPackedFileVersion) {
    throw PackedFileError("format version " + std::to_string(version) + " is not supported (this build reads 1 to " +
                          std::to_string(kPackedFileVersion) + ")");
  }
  const auto parse = [version](std::string_view records) {
    return version == 1 ? parse_records_v1(records) : parse_records(records, version);
  };
  const std::string_view body = bytes.substr(0, bytes.size() - sizeof(uint32_t));
  const std::string_view records = body.substr(sizeof(kPackedFileMagic) + sizeof(uint32_t));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + body.size(), sizeof(uint32_t));
  if (crc32_of(body) != stored_crc) {
    // A file cut short fails its checksum too: say which it is where the contents run past
    // the end of the file.
    try {
      parse(records);
    } catch (const TruncatedFileError& error) {
      throw TruncatedFileError(std::string(error.what()) + "; the file is shorter than its contents");
    } catch (const PackedFileError&) {
    }
    throw PackedFileError("checksum mismatch: the file is corrupted");
  }
  return parse(records);
}

}  // namespace bittorch::io
