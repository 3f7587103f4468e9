#pragma once

// A GGUF file (version 3, little-endian; ggml's format of llama.cpp and bitnet.cpp) built in
// memory: metadata key-value pairs and tensors, then written at once. Only the value and
// tensor types BitTorch exports are offered.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bittorch::io::detail {

/// ggml's tensor types that BitTorch writes (ggml.h's ggml_type numbers).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, BF16 = 30, TQ2_0 = 35 };

/// Values per TQ2_0 block: a row of a TQ2_0 tensor is a whole number of blocks.
constexpr int64_t kTq2BlockValues = 256;

/// TQ2_0's bytes of `codes` (int8 [rows, columns] in {-1, 0, 1}, columns a multiple of 256)
/// with `scale` (each block's float16 multiplier): per block of 256 values, 64 bytes in which
/// byte 32 * j + m holds code + 1 of value 128 * j + 32 * n + m in bits 2n, 2n + 1; then the
/// scale as float16.
std::string encode_tq2_0(const at::Tensor& codes, float scale);

class GgufWriter {
 public:
  void add(const std::string& key, uint32_t value);
  void add(const std::string& key, float value);
  void add(const std::string& key, bool value);
  void add(const std::string& key, const std::string& value);
  void add(const std::string& key, const char* value) { add(key, std::string(value)); }
  void add(const std::string& key, const std::vector<std::string>& values);
  void add(const std::string& key, const std::vector<int32_t>& values);

  /// A tensor of `shape` (PyTorch's order, outermost first: GGUF records it innermost first)
  /// whose data are `bytes` in `type`'s layout.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type, std::string bytes);
  /// A float tensor (any device and dtype) stored as F32, F16 or BF16.
  void add_tensor(const std::string& name, const at::Tensor& tensor, GgmlType type);

  /// The file: header, metadata, tensor infos, data aligned to 32 bytes.
  std::string bytes() const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType type;
    std::string data;
  };
  std::string metadata_;
  uint64_t metadata_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace bittorch::io::detail
