#pragma once

// The numbers a packed model file stores for a module of your own (docs/packed-format.md).

#include <bittorch/export.h>

#include <cstdint>
#include <vector>

namespace bittorch::nn {

/// For modules of your own that packed files describe with numbers of their own (their
/// architecture: sizes, kinds), stored in their record, compared by io::load_packed_into, and
/// read back by io::read_packed_numbers so that a program can build the model from the file
/// alone (TransformerLM does).
class BITTORCH_API PackedNumbers {
 public:
  virtual ~PackedNumbers() = default;
  virtual std::vector<int64_t> packed_ints() const = 0;
  virtual std::vector<double> packed_reals() const = 0;
};

}  // namespace bittorch::nn
