#pragma once

// CRC-32 (zlib's) of any number of bytes. Header-only and LibTorch-free: the packed-file
// parser uses it, and so does its fuzzer, which is built without LibTorch.

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace bittorch::io {

inline uint32_t crc32_of(std::string_view bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  for (size_t offset = 0; offset < bytes.size();) {
    const auto chunk = static_cast<uInt>(std::min<size_t>(bytes.size() - offset, size_t{1} << 30));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + offset), chunk);
    offset += chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace bittorch::io
