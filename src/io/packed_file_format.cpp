#include "io/packed_file_format.h"

#include "io/crc32.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace bittorch::io {
namespace {

// Limits that keep a corrupted size field from asking for absurd allocations.
constexpr uint32_t kMaxModules = 1u << 16;
constexpr uint32_t kMaxNameBytes = 1u << 12;
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
  const char* take(size_t size, const char* what) {
    if (size > bytes_.size() - offset_) {
      throw TruncatedFileError(std::string("truncated file: ") + what + " runs past the end (byte " +
                            std::to_string(offset_) + " of " + std::to_string(bytes_.size()) + ")");
    }
    const char* data = bytes_.data() + offset_;
    offset_ += size;
    return data;
  }
  size_t remaining() const { return bytes_.size() - offset_; }

 private:
  std::string_view bytes_;
  size_t offset_ = 0;
};

int64_t trit_bytes(int64_t in_features, int64_t out_features) { return (in_features * out_features + 4) / 5; }

// `count` float32 values of module `name`, each finite.
std::vector<float> read_finite_floats(Reader& r, size_t count, const std::string& name, const char* what) {
  std::vector<float> values(count);
  std::memcpy(values.data(), r.take(count * sizeof(float), what), count * sizeof(float));
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(values[i])) {
      throw PackedFileError("module '" + name + "' has a non-finite " + what + " (" + std::to_string(values[i]) +
                            " at row " + std::to_string(i) + ")");
    }
  }
  return values;
}

// The records after the header (magic and version), up to the checksum.
std::vector<PackedModuleRecord> parse_records(std::string_view records_bytes) {
  Reader r(records_bytes);
  const auto count = r.get<uint32_t>("module count");
  if (count > kMaxModules) throw PackedFileError("implausible module count " + std::to_string(count));
  std::vector<PackedModuleRecord> records;
  for (uint32_t i = 0; i < count; ++i) {
    PackedModuleRecord m;
    const auto kind = r.get<uint8_t>("module kind");
    if (kind != static_cast<uint8_t>(ModuleKind::PackedTernaryLinear) && kind != static_cast<uint8_t>(ModuleKind::ReLU)) {
      throw PackedFileError("module " + std::to_string(i) + " has unknown kind " + std::to_string(kind));
    }
    m.kind = static_cast<ModuleKind>(kind);
    const auto name_size = r.get<uint32_t>("name length");
    if (name_size > kMaxNameBytes) throw PackedFileError("module " + std::to_string(i) + " has an implausible name length");
    m.name.assign(r.take(name_size, "module name"), name_size);
    if (m.kind == ModuleKind::PackedTernaryLinear) {
      m.in_features = r.get<int64_t>("in_features");
      m.out_features = r.get<int64_t>("out_features");
      if (m.in_features < 1 || m.out_features < 1 || m.in_features > kMaxFeatures || m.out_features > kMaxFeatures ||
          m.in_features * m.out_features > kMaxWeights) {
        throw PackedFileError("module '" + m.name + "' has an invalid shape " + std::to_string(m.out_features) + "x" +
                              std::to_string(m.in_features));
      }
      m.activation_bits = r.get<uint8_t>("activation_bits");
      if (m.activation_bits != 0 && m.activation_bits != 8) {
        throw PackedFileError("module '" + m.name + "' has activation_bits " + std::to_string(m.activation_bits));
      }
      const auto has_bias = r.get<uint8_t>("bias flag");
      if (has_bias > 1) throw PackedFileError("module '" + m.name + "' has an invalid bias flag");
      const auto scale_dtype = r.get<uint8_t>("scale dtype");
      if (scale_dtype != kScaleDtypeFloat32) {
        throw PackedFileError("module '" + m.name + "' has scale dtype " + std::to_string(scale_dtype) +
                              ", which this version does not read (1: float32)");
      }
      const auto code_bytes = static_cast<size_t>(trit_bytes(m.in_features, m.out_features));
      m.trits = std::string_view(r.take(code_bytes, "ternary codes"), code_bytes);
      const auto out = static_cast<size_t>(m.out_features);
      m.scale = read_finite_floats(r, out, m.name, "scale");
      if (has_bias == 1) m.bias = read_finite_floats(r, out, m.name, "bias");
    }
    records.push_back(std::move(m));
  }
  if (r.remaining() != 0) throw PackedFileError(std::to_string(r.remaining()) + " unexpected bytes after the last module");
  return records;
}

}  // namespace

std::string write_packed_file(const std::vector<PackedModuleRecord>& records) {
  Writer w;
  w.put_bytes(kPackedFileMagic, sizeof(kPackedFileMagic));
  w.put<uint32_t>(kPackedFileVersion);
  w.put<uint32_t>(static_cast<uint32_t>(records.size()));
  for (const auto& r : records) {
    w.put<uint8_t>(static_cast<uint8_t>(r.kind));
    w.put<uint32_t>(static_cast<uint32_t>(r.name.size()));
    w.put_bytes(r.name.data(), r.name.size());
    if (r.kind != ModuleKind::PackedTernaryLinear) continue;
    w.put<int64_t>(r.in_features);
    w.put<int64_t>(r.out_features);
    w.put<uint8_t>(static_cast<uint8_t>(r.activation_bits));
    w.put<uint8_t>(r.bias.empty() ? 0 : 1);
    w.put<uint8_t>(kScaleDtypeFloat32);
    w.put_bytes(r.trits.data(), r.trits.size());
    w.put_bytes(r.scale.data(), r.scale.size() * sizeof(float));
    w.put_bytes(r.bias.data(), r.bias.size() * sizeof(float));
  }
  w.put<uint32_t>(crc32_of(w.bytes()));
  return std::move(w.bytes());
}

std::vector<PackedModuleRecord> parse_packed_file(std::string_view bytes) {
  if (bytes.size() < sizeof(kPackedFileMagic) + 3 * sizeof(uint32_t)) {
    throw PackedFileError("truncated file: " + std::to_string(bytes.size()) + " bytes is shorter than any header");
  }
  if (std::memcmp(bytes.data(), kPackedFileMagic, sizeof(kPackedFileMagic)) != 0) {
    throw PackedFileError("not a BitTorch packed model (bad magic)");
  }
  Reader header(bytes.substr(sizeof(kPackedFileMagic)));
  const auto version = header.get<uint32_t>("version");
  if (version != kPackedFileVersion) {
    throw PackedFileError("format version " + std::to_string(version) + " is not supported (this build reads " +
                          std::to_string(kPackedFileVersion) + ")");
  }
  const std::string_view body = bytes.substr(0, bytes.size() - sizeof(uint32_t));
  const std::string_view records = body.substr(sizeof(kPackedFileMagic) + sizeof(uint32_t));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + body.size(), sizeof(uint32_t));
  if (crc32_of(body) != stored_crc) {
    // A file cut short fails its checksum too: say which it is where the contents run past
    // the end of the file.
    try {
      parse_records(records);
    } catch (const TruncatedFileError& error) {
      throw TruncatedFileError(std::string(error.what()) + "; the file is shorter than its contents");
    } catch (const PackedFileError&) {
    }
    throw PackedFileError("checksum mismatch: the file is corrupted");
  }
  return parse_records(records);
}

}  // namespace bittorch::io
