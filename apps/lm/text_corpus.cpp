#include "lm/text_corpus.h"

#include <bittorch/distributed/data_parallel.h>

#include "common/gzip_stream.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace bittorch::apps {

torch::Tensor read_text_bytes(const std::string& path, int64_t min_bytes, const std::string& flag) {
  const std::string how_to_get = "give a UTF-8 or ASCII text file, gzipped or not, with " + flag;
  GzipStream stream(path, how_to_get);
  std::string text;
  std::vector<uint8_t> chunk(1 << 20);
  for (size_t got; (got = stream.read(chunk.data(), chunk.size())) > 0;) {
    text.append(reinterpret_cast<const char*>(chunk.data()), got);
  }
  TORCH_CHECK(!text.empty(), path, " is empty; ", how_to_get);
  TORCH_CHECK(static_cast<int64_t>(text.size()) > min_bytes, path, " holds ", text.size(),
              " bytes, too few for one window of ", min_bytes, " bytes (the context + 1); ", how_to_get,
              " or a shorter --context");
  auto bytes = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  return bytes;
}

TextBatches::TextBatches(const torch::Tensor& bytes, int64_t context, torch::Device device)
    : tokens_(bytes.to(device, torch::kLong)), context_(context) {
  TORCH_CHECK(tokens_.size(0) > context_, "a corpus of ", tokens_.size(0), " bytes has no window of ", context_ + 1);
}

std::pair<torch::Tensor, torch::Tensor> TextBatches::windows(const torch::Tensor& offsets) const {
  const auto index = offsets.to(tokens_.device()).unsqueeze(1) +
                     torch::arange(context_ + 1, torch::TensorOptions().dtype(torch::kLong).device(tokens_.device()));
  const auto window = tokens_.index({index});
  return {window.narrow(1, 0, context_), window.narrow(1, 1, context_)};
}

std::pair<torch::Tensor, torch::Tensor> TextBatches::random(int64_t batch, uint64_t seed, int64_t index, int64_t rank,
                                                            int64_t ranks) const {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + static_cast<uint64_t>(index));
  const auto offsets = torch::randint(size() - context_, {batch * ranks}, generator, torch::kLong);
  return windows(distributed::shard_of_batch(offsets, rank, ranks));
}

std::pair<torch::Tensor, torch::Tensor> TextBatches::spaced(int64_t batch, int64_t first, int64_t count) const {
  const int64_t last_offset = size() - context_ - 1;
  const auto position = torch::arange(first, first + batch, torch::kDouble);
  const auto offsets = (position * (static_cast<double>(last_offset) / std::max<int64_t>(count - 1, 1)))
                           .floor()
                           .clamp_max(static_cast<double>(last_offset))
                           .to(torch::kLong);
  return windows(offsets);
}

}  // namespace bittorch::apps
