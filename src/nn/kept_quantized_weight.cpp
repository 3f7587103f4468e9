#include "nn/kept_quantized_weight.h"

#include <bittorch/nn/modules/ternary_linear.h>

#include <vector>

namespace bittorch::nn {
namespace {

// This thread's open scopes and the weights kept in them.
struct Scopes {
  int depth = 0;
  std::vector<std::weak_ptr<detail::KeptQuantizedWeight>> kept;
};
thread_local Scopes scopes;

}  // namespace

KeepQuantizedWeights::KeepQuantizedWeights() {
  ++scopes.depth;
}

KeepQuantizedWeights::~KeepQuantizedWeights() {
  if (--scopes.depth > 0) return;
  for (const auto& weak : scopes.kept) {
    if (const auto kept = weak.lock()) *kept = detail::KeptQuantizedWeight{};  // its memory back, and never a match
  }
  scopes.kept.clear();
}

bool KeepQuantizedWeights::active() {
  return scopes.depth > 0;
}

namespace detail {

void drop_when_scope_ends(const std::shared_ptr<KeptQuantizedWeight>& kept) {
  scopes.kept.push_back(kept);
}

}  // namespace detail
}  // namespace bittorch::nn
