// bittorch::sample_tokens: schema, typed entry and argument checks.

#include "ops/sample_tokens/sample_tokens.h"

#include <bittorch/ops/sample_tokens.h>

#include "ops/common/checks.h"

#include <torch/library.h>

#include <cmath>

TORCH_LIBRARY_FRAGMENT(bittorch, m) {
  // The next token of each row of logits: the argmax at temperature 0, else a draw from the
  // tempered softmax of the top k (0: all).
  m.def("sample_tokens(Tensor logits, float temperature, int top_k=0, Generator? generator=None) -> Tensor");
}

namespace bittorch::ops {

at::Tensor sample_tokens(const at::Tensor& logits, double temperature, int64_t top_k,
                         std::optional<at::Generator> generator) {
  static const auto op = find_op<decltype(sample_tokens)>("bittorch::sample_tokens");
  return op.call(logits, temperature, top_k, std::move(generator));
}

void check_sample_tokens_args(const char* op, const at::Tensor& logits, double temperature, int64_t top_k) {
  check_floating(op, "logits", logits);
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": expected float32, float64, float16 or bfloat16 logits, but got ", dtype);
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) >= 1 && logits.size(1) >= 1, op,
              ": expected logits [batch, vocab], got ", logits.sizes());
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 0, op, ": temperature must be finite and >= 0, not ",
              temperature);
  TORCH_CHECK(top_k >= 0, op, ": top_k must be >= 0, not ", top_k);
}

}  // namespace bittorch::ops
