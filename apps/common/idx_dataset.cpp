#include "common/idx_dataset.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bittorch::apps {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int64_t kSide = 28;

// The bytes of one IDX file, gzipped or not (zlib reads a plain file as it is), in order.
class IdxStream {
 public:
  IdxStream(std::string path, const std::string& how_to_get) : path_(std::move(path)), how_to_get_(how_to_get) {
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
  ~IdxStream() { gzclose(file_); }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  const std::string& path() const { return path_; }

  // Up to `size` bytes; fewer only at the end of the data. A zlib error is a c10::Error.
  size_t read(uint8_t* out, size_t size) {
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

  // Reads `size` bytes or fails naming what was being read.
  void read_exactly(uint8_t* out, size_t size, const std::string& what) {
    const size_t got = read(out, size);
    TORCH_CHECK(got == size, path_, " is truncated or corrupted: it ends in its ", what, "; ", how_to_get_);
  }

 private:
  std::string path_, how_to_get_;
  gzFile file_ = nullptr;
};

uint32_t big_endian(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

// Reads an IDX header: `magic`, the item count, then `dims` sizes (checked); returns the count.
int64_t read_header(IdxStream& stream, uint32_t magic, const std::vector<int64_t>& dims,
                    const std::string& how_to_get) {
  std::vector<uint8_t> header(8 + 4 * dims.size());
  const size_t got = stream.read(header.data(), header.size());
  TORCH_CHECK(got == header.size(), stream.path(), " is truncated: ", got, " bytes, shorter than its ", header.size(),
              "-byte header; ", how_to_get);
  const uint32_t found_magic = big_endian(header.data());
  TORCH_CHECK(found_magic == magic, stream.path(), " has the wrong magic number ", found_magic, " (expected ", magic,
              "): not an MNIST-format ", magic == kImagesMagic ? "images" : "labels", " file; ", how_to_get);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t dim = big_endian(header.data() + 8 + 4 * i);
    TORCH_CHECK(dim == dims[i], stream.path(), " has images of size ", dim, " where ", dims[i], " was expected; ",
                how_to_get);
  }
  return big_endian(header.data() + 4);
}

// The first `keep` of the `count` items of `item_size` bytes that follow the header, as a
// uint8 tensor; the rest is read and dropped in chunks, and the file must end exactly there.
torch::Tensor read_items(IdxStream& stream, int64_t count, int64_t item_size, int64_t keep,
                         const std::string& how_to_get) {
  auto items = torch::empty({keep * item_size}, torch::kUInt8);
  stream.read_exactly(items.data_ptr<uint8_t>(), static_cast<size_t>(keep * item_size),
                      "data (its header announces " + std::to_string(count) + " items)");
  std::vector<uint8_t> chunk(1 << 16);
  for (int64_t left = (count - keep) * item_size; left > 0;) {
    const auto size = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(chunk.size())));
    stream.read_exactly(chunk.data(), size, "data (its header announces " + std::to_string(count) + " items)");
    left -= static_cast<int64_t>(size);
  }
  uint8_t extra = 0;
  TORCH_CHECK(stream.read(&extra, 1) == 0, stream.path(), " is longer than the ", count,
              " items its header announces: truncated or corrupted header; ", how_to_get);
  return items;
}

// `name` or `name`.gz in `root`, whichever exists (the unpacked file first).
std::string find_file(const std::string& root, const std::string& name, const std::string& how_to_get) {
  struct stat info {};
  TORCH_CHECK(::stat(root.c_str(), &info) == 0, "data directory ", root, " does not exist; ", how_to_get);
  TORCH_CHECK(S_ISDIR(info.st_mode), "data directory ", root, " is not a directory; ", how_to_get);
  for (const auto& candidate : {root + "/" + name, root + "/" + name + ".gz"}) {
    if (::stat(candidate.c_str(), &info) == 0) return candidate;
  }
  TORCH_CHECK(false, "missing ", root, "/", name, ".gz (or its unpacked ", name, "); ", how_to_get);
}

}  // namespace

IdxDataset::IdxDataset(const std::string& root, Split split, int64_t limit, const std::string& how_to_get) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  IdxStream images(find_file(root, prefix + "-images-idx3-ubyte", how_to_get), how_to_get);
  IdxStream labels(find_file(root, prefix + "-labels-idx1-ubyte", how_to_get), how_to_get);
  const int64_t image_count = read_header(images, kImagesMagic, {kSide, kSide}, how_to_get);
  const int64_t label_count = read_header(labels, kLabelsMagic, {}, how_to_get);
  TORCH_CHECK(image_count == label_count, images.path(), " has ", image_count, " images but ", labels.path(), " has ",
              label_count, " labels; ", how_to_get);
  TORCH_CHECK(image_count > 0, images.path(), " holds no images; ", how_to_get);
  const int64_t keep = limit > 0 ? std::min(limit, image_count) : image_count;
  const auto pixels = read_items(images, image_count, kSide * kSide, keep, how_to_get);
  const auto kept_labels = read_items(labels, label_count, 1, keep, how_to_get);
  TORCH_CHECK(kept_labels.max().item<int64_t>() <= 9, labels.path(), " holds labels above 9: corrupted; ", how_to_get);
  images_ = pixels.reshape({keep, 1, kSide, kSide}).to(torch::kFloat).div_(255);
  targets_ = kept_labels.to(torch::kLong);
}

torch::data::Example<> IdxDataset::get(size_t index) {
  return {images_[static_cast<int64_t>(index)], targets_[static_cast<int64_t>(index)]};
}

std::optional<size_t> IdxDataset::size() const {
  return images_.size(0);
}

}  // namespace bittorch::apps
