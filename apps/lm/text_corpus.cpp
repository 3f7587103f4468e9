#include "lm/text_corpus.h"

#include <bittorch/distributed/data_parallel.h>

#include "common/gzip_stream.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace bittorch::apps {

torch::Tensor read_text_bytes(const std::string& path, int64_t min_bytes, const std::string& flag) {
  const std::string how_to_get = "give a UTF-8 or ASCII text file, gzipped or not, with " + flag;
  GzipStream stream(path, how_to_get);
  // The bytes as they come, kept by the tensor that is returned (no copy); a corpus beyond
  // the limit is refused as soon as it is passed, before it is all held.
  auto text = std::make_unique<std::vector<uint8_t>>();
  std::vector<uint8_t> chunk(1 << 20);
  for (size_t got; (got = stream.read(chunk.data(), chunk.size())) > 0;) {
    TORCH_CHECK(static_cast<int64_t>(text->size() + got) <= kMaxCorpusBytes, path, " holds more than ", kMaxCorpusBytes,
                " bytes of text (after decompression), more than bittorch-lm holds in memory; ", how_to_get,
                " that is smaller");
    text->insert(text->end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
  }
  TORCH_CHECK(!text->empty(), path, " is empty; ", how_to_get);
  TORCH_CHECK(static_cast<int64_t>(text->size()) > min_bytes, path, " holds ", text->size(),
              " bytes, too few for one window of ", min_bytes, " bytes (the context + 1); ", how_to_get,
              " or a shorter --context");
  text->shrink_to_fit();
  auto* owned = text.release();
  return torch::from_blob(
      owned->data(), {static_cast<int64_t>(owned->size())}, [owned](void*) { delete owned; }, torch::kUInt8);
}

torch::Tensor tokenize_text(const torch::Tensor& bytes, const io::Tokenizer& tokenizer, const std::string& path) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.const_data_ptr<uint8_t>()),
                              static_cast<size_t>(bytes.numel()));
  std::vector<int64_t> ids;
  try {
    ids = tokenizer.encode(text);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, path, ": ", error.what_without_backtrace());
  }
  return torch::tensor(ids, torch::kLong).to(torch::kInt);
}

TextBatches::TextBatches(const torch::Tensor& tokens, int64_t context, torch::Device device)
    : tokens_(tokens.to(device)), context_(context) {
  TORCH_CHECK(tokens_.size(0) > context_, "a corpus of ", tokens_.size(0), " tokens has no window of ", context_ + 1);
}

std::pair<torch::Tensor, torch::Tensor> TextBatches::windows(const torch::Tensor& offsets) const {
  const auto index = offsets.to(tokens_.device()).unsqueeze(1) +
                     torch::arange(context_ + 1, torch::TensorOptions().dtype(torch::kLong).device(tokens_.device()));
  const auto window = tokens_.index({index}).to(torch::kLong);  // int64 tokens, a batch at a time
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
