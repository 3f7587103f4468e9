#include "ops/sample_tokens/sample_tokens.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

at::Tensor sample_tokens_meta(const at::Tensor& logits, double temperature, int64_t top_k,
                              std::optional<at::Generator> /*generator*/) {
  check_sample_tokens_args("bittorch::sample_tokens", logits, temperature, top_k);
  return at::empty({logits.size(0)}, logits.options().dtype(at::kLong));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Meta, m) {
  m.impl("sample_tokens", &sample_tokens_meta);
}

}  // namespace bittorch::ops
