#include "common/gzip_stream.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace bittorch::apps {

GzipStream::GzipStream(std::string path, std::string how_to_get)
    : path_(std::move(path)), how_to_get_(std::move(how_to_get)) {
  // O_NONBLOCK: a FIFO must not hang the open before it is refused.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, "cannot open ", path_, " (", std::strerror(errno), "); ", how_to_get_);
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    TORCH_CHECK(false, path_, " is not a regular file; ", how_to_get_);
  }
  file_ = gzdopen(fd, "rb");
  if (file_ == nullptr) ::close(fd);
  TORCH_CHECK(file_ != nullptr, "cannot read ", path_, "; ", how_to_get_);
}

GzipStream::~GzipStream() {
  gzclose(file_);
}

size_t GzipStream::read(uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    const auto chunk = static_cast<unsigned>(std::min<size_t>(size - done, 1u << 30));
    const int got = gzread(file_, out + done, chunk);
    if (got < 0) {
      int code = Z_OK;
      const std::string message = gzerror(file_, &code);
      TORCH_CHECK(false, path_, " is corrupted or truncated (zlib: ", message, "); ", how_to_get_);
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  // A gzip stream that ends early reads as a short file; zlib tells the two apart.
  if (done < size) {
    int code = Z_OK;
    const std::string message = gzerror(file_, &code);
    TORCH_CHECK(code == Z_OK, path_, " is truncated (zlib: ", message, "); ", how_to_get_);
  }
  return done;
}

void GzipStream::read_exactly(uint8_t* out, size_t size, const std::string& what) {
  const size_t got = read(out, size);
  TORCH_CHECK(got == size, path_, " is truncated or corrupted: it ends in its ", what, "; ", how_to_get_);
}

}  // namespace bittorch::apps
