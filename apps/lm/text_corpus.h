#pragma once

// Text as tokens (bytes: vocabulary 256, any UTF-8 or ASCII text; or a tokenizer's ids) and
// the batches bittorch-lm trains and evaluates on.

#include <bittorch/io/tokenizer.h>

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace bittorch::apps {

/// The most text bittorch-lm reads from one file (after decompression): 4 GiB, held as one
/// byte per byte (and again on the device).
constexpr int64_t kMaxCorpusBytes = int64_t{4} << 30;

/// The bytes of the text file at `path`, gzipped or not, as a uint8 tensor. A missing,
/// non-regular, empty or unreadable (corrupted, truncated gzip) file, one of at most
/// `min_bytes` bytes (a training window needs context + 1), or one of more than
/// kMaxCorpusBytes is a c10::Error naming the file and the flag that chose it.
torch::Tensor read_text_bytes(const std::string& path, int64_t min_bytes, const std::string& flag);

/// The ids `tokenizer` gives the text `bytes` (uint8, from read_text_bytes) as an int32 tensor;
/// text that is not UTF-8 is a c10::Error naming the file `path` and the byte.
torch::Tensor tokenize_text(const torch::Tensor& bytes, const io::Tokenizer& tokenizer, const std::string& path);

/// Windows of `context` + 1 consecutive tokens of a corpus: inputs are the first `context`,
/// targets the last `context` (the next token of each position).
class TextBatches {
 public:
  /// The corpus (uint8 bytes or int32 ids) goes to `device` once as it is; batches are int64.
  TextBatches(const torch::Tensor& tokens, int64_t context, torch::Device device);

  /// `batch` windows at offsets drawn from a generator seeded by (seed, index): the same index
  /// gives the same batch, so a resumed run sees the batches the interrupted one would have.
  /// With `ranks` > 1 the draw is of batch * ranks windows, and this is part `rank` of them:
  /// the ranks of a data-parallel run together see the batch one process would.
  std::pair<torch::Tensor, torch::Tensor> random(int64_t batch, uint64_t seed, int64_t index, int64_t rank = 0,
                                                 int64_t ranks = 1) const;
  /// The windows at evenly spaced offsets `first`.. (evaluation: the same every time).
  std::pair<torch::Tensor, torch::Tensor> spaced(int64_t batch, int64_t first, int64_t count) const;

  int64_t size() const { return tokens_.size(0); }

 private:
  std::pair<torch::Tensor, torch::Tensor> windows(const torch::Tensor& offsets) const;

  torch::Tensor tokens_;
  int64_t context_;
};

}  // namespace bittorch::apps
