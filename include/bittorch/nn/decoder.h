#pragma once

// Decoding many sequences of a TransformerLM at once, each in its own slot of one KV cache at
// its own position: the prompts prefilled one by one (one pass each), then one step appends a
// token to every sequence. On CUDA the step is captured in a CUDA graph and replayed.
//
//   bittorch::nn::Decoder decoder(*model, /*batch=*/2, torch::kBFloat16);
//   auto first = decoder.prefill(0, prompt_a);          // logits [vocab] of its last token
//   decoder.prefill(1, prompt_b);                       // another length
//   auto logits = decoder.step(next_tokens);            // [2] -> [2, vocab]
//
// A sampler set before the first step runs inside the step (in its graph on CUDA), so that
// a token costs one launch: decoder.sampled() is then the next token of each sequence.

#include <bittorch/export.h>
#include <bittorch/nn/modules/transformer.h>
#include <bittorch/nn/quantized_weight_cache.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace bittorch::nn {

namespace detail {
class CapturedStep;
}

class BITTORCH_API Decoder {
 public:
  /// `batch` empty sequences of `model` (used as it is: call eval() first), keys and values
  /// cached in `cache_dtype` on the model's device, the step computed in that dtype. With
  /// `cuda_graph` (and a CUDA model that decode_step takes) the first step runs eagerly and the
  /// second is captured in a CUDA graph that every later step replays. Ternary layers quantize
  /// their weights once, while the decoder lives: the weights must not change meanwhile. The
  /// model's projections that read one input are joined (nn::fuse_projections).
  Decoder(TransformerLMImpl& model, int64_t batch, at::ScalarType cache_dtype, bool cuda_graph = true);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  int64_t batch() const { return static_cast<int64_t>(lengths_.size()); }
  /// Tokens held in sequence `index`'s cache.
  int64_t length(int64_t index) const;

  /// Empties sequence `index`'s cache and runs `tokens` (int64 [T], 0 <= T <= context, on any
  /// device) through it in one pass: the logits [vocab] of its last token (undefined for T = 0).
  at::Tensor prefill(int64_t index, const at::Tensor& tokens);

  /// Appends `tokens` (int64 [batch] on the model's device), one to each sequence, and returns
  /// their logits [batch, vocab]. Every sequence needs room (length < context: prefill a
  /// shorter window first). Nothing waits for the GPU. Replayed from a graph, the logits are
  /// the graph's output tensor, overwritten by the next step: clone them to keep them.
  at::Tensor step(const at::Tensor& tokens);

  /// Nodes (kernels, copies) of the captured step, 0 before the capture or without one.
  int64_t graph_nodes() const;

  /// Runs `sampler` on each step's logits [batch, vocab] as part of the step (captured with it
  /// in the CUDA graph): it must return int64 [batch] on the model's device without waiting
  /// for it, and draw random numbers from `generator` alone (registered with the graph, so
  /// that each replay draws new ones, as the same calls without a graph would). Set before the
  /// first step.
  void set_sampler(std::function<at::Tensor(const at::Tensor& logits)> sampler, at::Generator generator);
  /// The sampler's tokens of the last step, int64 [batch] (replayed from a graph: its output
  /// tensor, overwritten by the next step).
  const at::Tensor& sampled() const;

 private:
  KVCache sequence_cache(int64_t index) const;
  void fused_step();  // decode_step at the positions tensor, which then moves on by one

  TransformerLMImpl& model_;
  KeepQuantizedWeights keep_;  // ternary layers quantize once, and a captured graph reads what they kept
  KVCache cache_;
  std::vector<int64_t> lengths_;
  bool fused_;  // decode_step takes the model on its device; else each sequence goes through forward
  bool cuda_graph_;
  int64_t steps_ = 0;
  at::Tensor tokens_, positions_, logits_;  // the fused step's inputs and output, at fixed addresses
  std::function<at::Tensor(const at::Tensor&)> sampler_;
  at::Generator sampler_generator_;
  at::Tensor sampled_;
  std::unique_ptr<detail::CapturedStep> graph_;
};

}  // namespace bittorch::nn
