#pragma once

// Reading a file that may be gzipped (zlib reads a plain file as it is), with errors that name
// the file and say how to get a good one.

#include <cstddef>
#include <cstdint>
#include <string>

typedef struct gzFile_s* gzFile;

namespace bittorch::apps {

class GzipStream {
 public:
  /// Opens `path`; a missing or non-regular file (a directory, a FIFO) is a c10::Error naming
  /// it and ending with `how_to_get`.
  GzipStream(std::string path, std::string how_to_get);
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  const std::string& path() const { return path_; }

  /// Up to `size` bytes; fewer only at the end of the data. A corrupted or truncated gzip
  /// stream is a c10::Error.
  size_t read(uint8_t* out, size_t size);
  /// Reads `size` bytes or fails naming `what` was being read.
  void read_exactly(uint8_t* out, size_t size, const std::string& what);

 private:
  std::string path_, how_to_get_;
  gzFile file_ = nullptr;
};

}  // namespace bittorch::apps
