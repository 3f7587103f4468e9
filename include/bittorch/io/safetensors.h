#pragma once

// The safetensors format (Hugging Face's): an 8-byte little-endian header size, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw little-endian arrays. What
// Hugging Face checkpoints, and BitTorch's exports to them, are stored in.

#include <bittorch/export.h>

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace bittorch::io {

struct BITTORCH_API SafetensorsFile {
  /// The tensors in the file's order of their data (CPU). They may share one buffer, the
  /// file's bytes read once; clone one to keep it alone.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  /// The header's "__metadata__" (string to string), if any.
  std::map<std::string, std::string> metadata;

  /// The tensor named `name`; a c10::Error names the file's path and `name` if it has none.
  const at::Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  std::string path;
};

/// Reads the safetensors file at `path`. Dtypes F64, F32, F16, BF16, I64, I32, I16, I8, U8 and
/// BOOL (F8_E4M3 and F8_E5M2 too) are read; anything malformed is refused with a c10::Error that
/// names the file (and the tensor): a header size beyond the file, a header that is not a JSON
/// object of entries with a known dtype, a shape and data_offsets whose span is the shape's
/// bytes within the data, overlapping spans, or data that the spans do not cover.
BITTORCH_API SafetensorsFile read_safetensors(const std::string& path);

/// Writes `tensors` (any device, any layout; written contiguous in their dtypes, little-endian)
/// and `metadata` to `path` atomically (write_file_atomically), in the order given; names must
/// be unique and not "__metadata__". The header is padded with spaces to a multiple of 8 bytes.
BITTORCH_API void write_safetensors(const std::string& path,
                                    const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                    const std::map<std::string, std::string>& metadata = {});

}  // namespace bittorch::io
