#include "common/idx_dataset.h"

#include "common/gzip_stream.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <vector>

namespace bittorch::apps {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int64_t kSide = 28;

uint32_t big_endian(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

// Reads an IDX header: `magic`, the item count, then `dims` sizes (checked); returns the count.
int64_t read_header(GzipStream& stream, uint32_t magic, const std::vector<int64_t>& dims,
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
torch::Tensor read_items(GzipStream& stream, int64_t count, int64_t item_size, int64_t keep,
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
  GzipStream images(find_file(root, prefix + "-images-idx3-ubyte", how_to_get), how_to_get);
  GzipStream labels(find_file(root, prefix + "-labels-idx1-ubyte", how_to_get), how_to_get);
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

bool IdxDataset::full_uncompressed_split(const std::string& root, Split split) {
  const bool train = split == Split::Train;
  const std::string prefix = root + "/" + (train ? "train" : "t10k");
  const int64_t count = train ? 60000 : 10000;
  const auto holds = [&](const std::string& path, uint32_t magic, int64_t header_bytes, int64_t item_bytes) {
    std::ifstream file(path, std::ios::binary | std::ios::ate);
    if (!file || file.tellg() != header_bytes + count * item_bytes) return false;
    file.seekg(0);
    uint8_t header[8] = {};
    file.read(reinterpret_cast<char*>(header), sizeof(header));
    return file.good() && big_endian(header) == magic && big_endian(header + 4) == static_cast<uint32_t>(count);
  };
  return holds(prefix + "-images-idx3-ubyte", kImagesMagic, 16, kSide * kSide) &&
         holds(prefix + "-labels-idx1-ubyte", kLabelsMagic, 8, 1);
}

torch::data::Example<> IdxDataset::get(size_t index) {
  return {images_[static_cast<int64_t>(index)], targets_[static_cast<int64_t>(index)]};
}

std::optional<size_t> IdxDataset::size() const {
  return images_.size(0);
}

}  // namespace bittorch::apps
