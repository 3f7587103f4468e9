#pragma once

// Sampling text from a TransformerLM with a KV cache: one forward pass over the prompt, then
// one position per new token.

#include <bittorch/nn/modules/transformer.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace bittorch::nn {

struct BITTORCH_API GenerateOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 256;
  /// Softmax temperature; 0 picks the most likely token (greedy).
  TORCH_ARG(double, temperature) = 1.0;
  /// Sample among the k most likely tokens only (0: all).
  TORCH_ARG(int64_t, top_k) = 0;
  /// Seeds the sampler (a generator of its own: the same seed gives the same text).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// The next token from logits [vocab] (any device and dtype): sampled on the CPU from
/// softmax(logits / temperature) restricted to the top_k, or the argmax at temperature 0.
BITTORCH_API int64_t sample_token(const at::Tensor& logits, double temperature, int64_t top_k,
                                  at::Generator& generator);

/// max_new_tokens tokens that continue `prompt` (int64 [T], T >= 1), as an int64 CPU tensor.
/// The KV cache lives in the model's dtype (the autocast dtype when autocast is on for the
/// model's device). When the context is full, generation continues from its last half (the
/// cache is rebuilt from those tokens). The model is used as it is (call eval() first).
BITTORCH_API at::Tensor generate(TransformerLMImpl& model, const at::Tensor& prompt, const GenerateOptions& options);

}  // namespace bittorch::nn
