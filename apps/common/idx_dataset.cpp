#include "common/idx_dataset.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

namespace bittorch::apps {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int64_t kSide = 28;

// The file's bytes, through zlib when `path` ends in .gz.
std::vector<uint8_t> read_bytes(const std::filesystem::path& path, const std::string& how_to_get) {
  std::vector<uint8_t> bytes;
  if (path.extension() == ".gz") {
    gzFile file = gzopen(path.c_str(), "rb");
    TORCH_CHECK(file != nullptr, "cannot open ", path.string(), "; ", how_to_get);
    uint8_t chunk[1 << 16];
    int read = 0;
    while ((read = gzread(file, chunk, sizeof(chunk))) > 0) {
      bytes.insert(bytes.end(), chunk, chunk + read);
    }
    int code = Z_OK;
    const std::string message = read < 0 ? gzerror(file, &code) : "";
    const int close_code = gzclose(file);
    TORCH_CHECK(read == 0 && close_code == Z_OK, path.string(),
                " is corrupted or truncated (zlib: ", read < 0 ? message : "unexpected end of file",
                "); ", how_to_get);
  } else {
    std::ifstream in(path, std::ios::binary);
    TORCH_CHECK(in, "cannot open ", path.string(), "; ", how_to_get);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return bytes;
}

uint32_t read_big_endian(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) |
         (uint32_t{bytes[offset + 2]} << 8) | uint32_t{bytes[offset + 3]};
}

// `name` or `name`.gz in `root`, whichever exists (the unpacked file first).
std::filesystem::path find_file(const std::filesystem::path& root, const std::string& name,
                                const std::string& how_to_get) {
  TORCH_CHECK(std::filesystem::is_directory(root), "data directory ", root.string(),
              " does not exist; ", how_to_get);
  for (const auto& candidate : {root / name, root / (name + ".gz")}) {
    if (std::filesystem::is_regular_file(candidate)) return candidate;
  }
  TORCH_CHECK(false, "missing ", (root / (name + ".gz")).string(), " (or its unpacked ", name,
              "); ", how_to_get);
}

// Reads an IDX file whose header is `magic`, the count and then `dims_after_count` sizes;
// checks them and the exact length. Returns the payload and the count.
std::pair<torch::Tensor, int64_t> read_idx(const std::filesystem::path& path, uint32_t magic,
                                           const std::vector<int64_t>& dims_after_count,
                                           const std::string& how_to_get) {
  const auto bytes = read_bytes(path, how_to_get);
  const size_t header = 8 + 4 * dims_after_count.size();
  TORCH_CHECK(bytes.size() >= header, path.string(), " is truncated: ", bytes.size(),
              " bytes, shorter than its ", header, "-byte header; ", how_to_get);
  const uint32_t found_magic = read_big_endian(bytes, 0);
  TORCH_CHECK(found_magic == magic, path.string(), " has the wrong magic number ", found_magic,
              " (expected ", magic, "): not an MNIST-format ",
              magic == kImagesMagic ? "images" : "labels", " file; ", how_to_get);
  const int64_t count = read_big_endian(bytes, 4);
  int64_t item_size = 1;
  for (size_t i = 0; i < dims_after_count.size(); ++i) {
    const int64_t dim = read_big_endian(bytes, 8 + 4 * i);
    TORCH_CHECK(dim == dims_after_count[i], path.string(), " has images of size ", dim,
                " where ", dims_after_count[i], " was expected; ", how_to_get);
    item_size *= dim;
  }
  const size_t expected = header + static_cast<size_t>(count * item_size);
  TORCH_CHECK(bytes.size() == expected, path.string(), " holds ", bytes.size(),
              " bytes but its header announces ", count, " items (", expected,
              " bytes): the file is truncated or corrupted; ", how_to_get);
  auto payload = torch::from_blob(const_cast<uint8_t*>(bytes.data()) + header,
                                  {static_cast<int64_t>(bytes.size() - header)}, torch::kUInt8)
                     .clone();
  return {payload, count};
}

}  // namespace

IdxDataset::IdxDataset(const std::string& root, Split split, const std::string& how_to_get) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const std::filesystem::path dir(root);
  const auto images_path = find_file(dir, prefix + "-images-idx3-ubyte", how_to_get);
  const auto labels_path = find_file(dir, prefix + "-labels-idx1-ubyte", how_to_get);
  auto [pixels, image_count] = read_idx(images_path, kImagesMagic, {kSide, kSide}, how_to_get);
  auto [labels, label_count] = read_idx(labels_path, kLabelsMagic, {}, how_to_get);
  TORCH_CHECK(image_count == label_count, images_path.string(), " has ", image_count,
              " images but ", labels_path.string(), " has ", label_count, " labels; ", how_to_get);
  TORCH_CHECK(image_count > 0, images_path.string(), " holds no images; ", how_to_get);
  TORCH_CHECK(labels.max().item<int64_t>() <= 9, labels_path.string(),
              " holds labels above 9: corrupted; ", how_to_get);
  images_ = pixels.reshape({image_count, 1, kSide, kSide}).to(torch::kFloat).div_(255);
  targets_ = labels.to(torch::kLong);
}

torch::data::Example<> IdxDataset::get(size_t index) {
  return {images_[static_cast<int64_t>(index)], targets_[static_cast<int64_t>(index)]};
}

std::optional<size_t> IdxDataset::size() const { return images_.size(0); }

}  // namespace bittorch::apps
