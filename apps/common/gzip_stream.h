#pragma once

// Reading a file that may be gzipped (one that does not start with gzip's magic number is read
// as it is), with errors that name the file and say how to get a good one. What Python's gzip
// refuses is refused: a member cut short (its trailer's CRC-32 and length are checked), and data
// after the last member other than zero padding; members one after another are read in turn.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct z_stream_s;

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
  // Reads the next bytes of the file into the buffer once it is used up (none at its end).
  void refill();

  std::string path_, how_to_get_;
  int fd_ = -1;
  std::vector<uint8_t> buffer_;
  size_t offset_ = 0, available_ = 0;  // the unread part of the buffer: [offset_, available_)
  bool gzip_ = false, in_member_ = false;
  std::unique_ptr<z_stream_s> stream_;
};

}  // namespace bittorch::apps
