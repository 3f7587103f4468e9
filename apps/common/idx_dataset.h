#pragma once

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <string>

namespace bittorch::apps {

/// An MNIST-format data set (MNIST, Fashion-MNIST): 28x28 images and labels 0-9 in the four
/// IDX files, each gzipped (read directly through zlib) or not. Same interface as
/// torch::data::datasets::MNIST, which cannot be used itself: it insists on exactly 60,000
/// training images, and the embedded default set has 10,000.
///
/// The files are streamed: only the first `limit` samples (0: all) are kept in memory, and
/// no file is read past the size its header declares (one byte beyond, to tell that it is
/// longer). Missing, non-regular, truncated, over-long or corrupted files and wrong magic
/// numbers are c10::Errors naming the file and `how_to_get` it.
class IdxDataset : public torch::data::datasets::Dataset<IdxDataset> {
 public:
  enum class Split { Train, Test };

  IdxDataset(const std::string& root, Split split, int64_t limit, const std::string& how_to_get);

  /// Whether `root` holds the uncompressed files of a full split, which LibTorch's
  /// torch::data::datasets::MNIST reads: 60,000 training or 10,000 test images and as many
  /// labels, each file exactly as long as its header says (the class itself checks the
  /// counts but not the lengths).
  static bool full_uncompressed_split(const std::string& root, Split split);

  torch::data::Example<> get(size_t index) override;
  std::optional<size_t> size() const override;

  /// [N, 1, 28, 28] float32 in [0, 1].
  const torch::Tensor& images() const { return images_; }
  /// [N] int64 in [0, 9].
  const torch::Tensor& targets() const { return targets_; }

 private:
  torch::Tensor images_, targets_;
};

}  // namespace bittorch::apps
