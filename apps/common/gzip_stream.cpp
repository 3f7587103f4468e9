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
namespace {

constexpr uint8_t kGzipMagic[2] = {0x1f, 0x8b};

}  // namespace

GzipStream::GzipStream(std::string path, std::string how_to_get)
    : path_(std::move(path)), how_to_get_(std::move(how_to_get)), buffer_(1 << 16) {
  // O_NONBLOCK: a FIFO must not hang the open before it is refused.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  TORCH_CHECK(fd_ >= 0, "cannot open ", path_, " (", std::strerror(errno), "); ", how_to_get_);
  struct stat info {};
  if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd_);
    TORCH_CHECK(false, path_, " is not a regular file; ", how_to_get_);
  }
  refill();
  gzip_ = available_ >= 2 && buffer_[0] == kGzipMagic[0] && buffer_[1] == kGzipMagic[1];
  if (gzip_) {
    stream_ = std::make_unique<z_stream>();
    // 16 + MAX_WBITS: one gzip member, header and trailer (CRC-32 and length) checked by zlib.
    if (inflateInit2(stream_.get(), 16 + MAX_WBITS) != Z_OK) {
      ::close(fd_);
      TORCH_CHECK(false, "cannot read ", path_, ": zlib failed to start; ", how_to_get_);
    }
    in_member_ = true;
  }
}

GzipStream::~GzipStream() {
  if (stream_) inflateEnd(stream_.get());
  ::close(fd_);
}

void GzipStream::refill() {
  if (offset_ < available_) return;
  offset_ = available_ = 0;
  for (;;) {
    const ssize_t got = ::read(fd_, buffer_.data(), buffer_.size());
    if (got < 0 && errno == EINTR) continue;
    TORCH_CHECK(got >= 0, "cannot read ", path_, " (", std::strerror(errno), "); ", how_to_get_);
    available_ = static_cast<size_t>(got);
    return;
  }
}

size_t GzipStream::read(uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    refill();
    if (!gzip_) {
      if (available_ == 0) break;  // the end of a plain file
      const size_t n = std::min(size - done, available_ - offset_);
      std::memcpy(out + done, buffer_.data() + offset_, n);
      offset_ += n;
      done += n;
      continue;
    }
    if (!in_member_) {
      // After a member: the end, zero padding (as Python's gzip accepts), or another member.
      while (offset_ < available_ && buffer_[offset_] == 0) ++offset_;
      if (offset_ < available_) {
        TORCH_CHECK(buffer_[offset_] == kGzipMagic[0], path_, " has ", "data after its gzip stream that is no gzip ",
                    "member: corrupted; ", how_to_get_);
        inflateReset(stream_.get());
        in_member_ = true;
      } else if (available_ == 0) {
        break;
      }
      continue;
    }
    TORCH_CHECK(available_ > 0, path_, " is truncated: its gzip stream ends before its end (the data or the ",
                "trailer's checksum and length); ", how_to_get_);
    stream_->next_in = buffer_.data() + offset_;
    stream_->avail_in = static_cast<uInt>(available_ - offset_);
    stream_->next_out = out + done;
    stream_->avail_out = static_cast<uInt>(std::min<size_t>(size - done, 1u << 30));
    const int code = inflate(stream_.get(), Z_NO_FLUSH);
    done = static_cast<size_t>(stream_->next_out - out);
    offset_ = available_ - stream_->avail_in;
    if (code == Z_STREAM_END) {
      in_member_ = false;  // header, data and trailer (CRC-32 and length) all checked
    } else if (code != Z_OK && code != Z_BUF_ERROR) {
      TORCH_CHECK(false, path_, " is corrupted (zlib: ", stream_->msg != nullptr ? stream_->msg : "error ",
                  stream_->msg != nullptr ? "" : std::to_string(code), "); ", how_to_get_);
    }
  }
  return done;
}

void GzipStream::read_exactly(uint8_t* out, size_t size, const std::string& what) {
  const size_t got = read(out, size);
  TORCH_CHECK(got == size, path_, " is truncated or corrupted: it ends in its ", what, "; ", how_to_get_);
}

}  // namespace bittorch::apps
