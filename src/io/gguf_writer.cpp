#include "io/gguf_writer.h"

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <cstring>

namespace bittorch::io::detail {
namespace {

constexpr uint64_t kAlignment = 32;  // GGUF's default (general.alignment unset)

// GGUF's metadata value types.
enum class ValueType : uint32_t { UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9 };

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts only (x86-64, AArch64)
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& text) {
  put<uint64_t>(out, text.size());
  out += text;
}

uint64_t aligned(uint64_t offset) {
  return (offset + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

std::string encode_tq2_0(const at::Tensor& codes, float scale) {
  TORCH_CHECK(codes.dim() == 2 && codes.size(1) % kTq2BlockValues == 0 && codes.scalar_type() == at::kChar,
              "encode_tq2_0: expected int8 codes [rows, a multiple of ", kTq2BlockValues, "], got ",
              codes.scalar_type(), " ", codes.sizes());
  const auto contiguous = codes.contiguous().cpu();
  const auto* values = contiguous.const_data_ptr<int8_t>();
  const int64_t count = contiguous.numel(), blocks = count / kTq2BlockValues;
  const uint16_t half_scale = c10::Half(scale).x;
  std::string out;
  out.reserve(static_cast<size_t>(blocks) * (kTq2BlockValues / 4 + 2));
  for (int64_t block = 0; block < blocks; ++block) {
    const int8_t* v = values + block * kTq2BlockValues;
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t m = 0; m < 32; ++m) {
        uint8_t byte = 0;
        for (int64_t n = 0; n < 4; ++n) {
          const int8_t code = v[128 * j + 32 * n + m];
          TORCH_CHECK(code >= -1 && code <= 1, "encode_tq2_0: code ", static_cast<int>(code), " is not -1, 0 or 1");
          byte |= static_cast<uint8_t>(code + 1) << (2 * n);
        }
        out.push_back(static_cast<char>(byte));
      }
    }
    put<uint16_t>(out, half_scale);
  }
  return out;
}

void GgufWriter::add(const std::string& key, uint32_t value) {
  put_string(metadata_, key);
  put(metadata_, ValueType::UInt32);
  put(metadata_, value);
  ++metadata_count_;
}

void GgufWriter::add(const std::string& key, float value) {
  put_string(metadata_, key);
  put(metadata_, ValueType::Float32);
  put(metadata_, value);
  ++metadata_count_;
}

void GgufWriter::add(const std::string& key, bool value) {
  put_string(metadata_, key);
  put(metadata_, ValueType::Bool);
  put<uint8_t>(metadata_, value ? 1 : 0);
  ++metadata_count_;
}

void GgufWriter::add(const std::string& key, const std::string& value) {
  put_string(metadata_, key);
  put(metadata_, ValueType::String);
  put_string(metadata_, value);
  ++metadata_count_;
}

void GgufWriter::add(const std::string& key, const std::vector<std::string>& values) {
  put_string(metadata_, key);
  put(metadata_, ValueType::Array);
  put(metadata_, ValueType::String);
  put<uint64_t>(metadata_, values.size());
  for (const auto& value : values) put_string(metadata_, value);
  ++metadata_count_;
}

void GgufWriter::add(const std::string& key, const std::vector<int32_t>& values) {
  put_string(metadata_, key);
  put(metadata_, ValueType::Array);
  put(metadata_, ValueType::Int32);
  put<uint64_t>(metadata_, values.size());
  for (const auto value : values) put(metadata_, value);
  ++metadata_count_;
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type,
                            std::string bytes) {
  for (const auto& tensor : tensors_)
    TORCH_CHECK(tensor.name != name, "GgufWriter: tensor '", name, "' is added twice");
  tensors_.push_back({name, shape, type, std::move(bytes)});
}

void GgufWriter::add_tensor(const std::string& name, const at::Tensor& tensor, GgmlType type) {
  const auto dtype = type == GgmlType::F32 ? at::kFloat : type == GgmlType::F16 ? at::kHalf : at::kBFloat16;
  TORCH_CHECK(type != GgmlType::TQ2_0, "GgufWriter: TQ2_0 tensors are added as bytes (encode_tq2_0)");
  const auto stored = tensor.detach().to(at::kCPU, dtype).contiguous();
  add_tensor(name, tensor.sizes().vec(), type,
             std::string(static_cast<const char*>(stored.const_data_ptr()), stored.nbytes()));
}

std::string GgufWriter::bytes() const {
  std::string out;
  out += "GGUF";
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, metadata_count_);
  out += metadata_;
  uint64_t offset = 0;
  for (const auto& tensor : tensors_) {
    put_string(out, tensor.name);
    put<uint32_t>(out, static_cast<uint32_t>(tensor.shape.size()));
    for (auto dim = tensor.shape.rbegin(); dim != tensor.shape.rend(); ++dim) put<uint64_t>(out, *dim);
    put(out, tensor.type);
    put<uint64_t>(out, offset);
    offset = aligned(offset + tensor.data.size());
  }
  out.resize(aligned(out.size()), '\0');
  for (const auto& tensor : tensors_) {
    out += tensor.data;
    out.resize(aligned(out.size()), '\0');
  }
  return out;
}

}  // namespace bittorch::io::detail
