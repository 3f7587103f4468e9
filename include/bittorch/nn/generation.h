#pragma once

// Sampling text from a TransformerLM: each prompt prefilled in one pass, then one token per
// step for all of them at once (nn::Decoder: a KV cache slot per sequence, the step replayed
// from a CUDA graph on CUDA), sampled on the model's device; the tokens come back to the host
// at the end.

#include <bittorch/nn/modules/transformer.h>
#include <bittorch/ops/sample_tokens.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <vector>

namespace bittorch::nn {

struct BITTORCH_API GenerateOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 256;
  /// Softmax temperature; 0 picks the most likely token (greedy).
  TORCH_ARG(double, temperature) = 1.0;
  /// Sample among the k most likely tokens only (0: all).
  TORCH_ARG(int64_t, top_k) = 0;
  /// Seeds the sampler, a generator of its own on the model's device: the same seed gives the
  /// same text on that device.
  TORCH_ARG(uint64_t, seed) = 0;
  /// On CUDA, replay the decode step from a CUDA graph (the same tokens as without one).
  TORCH_ARG(bool, cuda_graph) = true;
};

/// The sampler generate uses (ops::sample_tokens: argmax at temperature 0, else a draw from
/// the tempered softmax of the top k; on CUDA one kernel), under the name it had here.
using ops::sample_tokens;

/// max_new_tokens tokens that continue each of `prompts` (int64 [T], T >= 1, lengths may
/// differ), as int64 CPU tensors. The KV cache lives in the model's dtype (the autocast dtype
/// when autocast is on for the model's device). When a sequence fills the context, it goes on
/// from its last half (its cache rebuilt from those tokens). The model is used as it is (call
/// eval() first). At temperature 0 each sequence gets the tokens it gets alone; sampled
/// sequences of a batch share one generator, so they differ from those generated alone.
BITTORCH_API std::vector<at::Tensor> generate(TransformerLMImpl& model, const std::vector<at::Tensor>& prompts,
                                              const GenerateOptions& options);

/// generate of one prompt.
BITTORCH_API at::Tensor generate(TransformerLMImpl& model, const at::Tensor& prompt, const GenerateOptions& options);

}  // namespace bittorch::nn
