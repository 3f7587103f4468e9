// bittorch::sample_tokens on the CPU, from the formulas in ATen ops.

#include "ops/sample_tokens/sample_tokens.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>

namespace bittorch::ops {
namespace {

at::Tensor sample_tokens_cpu(const at::Tensor& logits, double temperature, int64_t top_k,
                             std::optional<at::Generator> generator) {
  check_sample_tokens_args("bittorch::sample_tokens", logits, temperature, top_k);
  if (temperature == 0) return logits.argmax(-1);  // NaN counts as the largest: its first index
  // Scores (x - max) / T in float32: the largest is 0, so no temperature overflows them, and
  // logits equal to an infinite largest share its probability.
  const auto x = logits.to(at::kFloat);
  const auto largest = std::get<0>(x.max(-1, /*keepdim=*/true));
  auto scores = at::where(x == largest, at::zeros({}, x.options()), (x - largest) / temperature);
  if (top_k > 0 && top_k < scores.size(1)) {
    const auto kth = std::get<0>(scores.topk(top_k, -1)).narrow(1, top_k - 1, 1);
    scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
  }
  const auto probabilities = scores.softmax(-1);
  const auto drawn = probabilities.div(at::empty_like(probabilities).exponential_(1, generator)).argmax(-1);
  // A row holding NaN: its first NaN, as the argmax of the logits gives it (on the CPU the
  // test costs no wait, so rows without NaN skip the rest).
  const auto nan = logits.isnan();
  if (!nan.any().item<bool>()) return drawn;
  return at::where(nan.any(-1), nan.to(at::kByte).argmax(-1), drawn);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CPU, m) {
  m.impl("sample_tokens", &sample_tokens_cpu);
}

}  // namespace bittorch::ops
