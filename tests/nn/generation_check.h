#pragma once

// Checks of nn::generate and nn::Decoder shared by the CPU and CUDA tests: generated tokens
// against whole forward passes of the model (no cache) over the window generation keeps, and
// a batch's logits against each sequence decoded alone.

#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

namespace bittorch::testing {

/// Whether greedy `generated` continues `prompt` as whole forward passes would: each token's
/// logit within `tolerance` (times the logits' magnitude) of the largest, the window being
/// the last `context` tokens of the prompt and, once the sequence outgrows it, the last half
/// of the context from the token that did. Returns "" or what differs.
inline std::string greedy_tokens_mismatch(nn::TransformerLMImpl& model, const torch::Tensor& prompt,
                                          const torch::Tensor& generated, double tolerance) {
  const torch::NoGradGuard no_grad;
  const int64_t context = model.options.context();
  std::vector<int64_t> tokens(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
  int64_t start = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - context);
  const auto device = model.embedding->weight.device();
  for (int64_t i = 0; i < generated.numel(); ++i) {
    const auto window = torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.end())).to(device);
    const auto logits = model.forward(window.unsqueeze(0))[0][-1].to(torch::kDouble).cpu();
    const int64_t token = generated[i].item<int64_t>();
    const double best = logits.max().item<double>(), got = logits[token].item<double>();
    if (got < best - tolerance * std::max(1.0, std::abs(best))) {
      return "token " + std::to_string(i) + " is " + std::to_string(token) + " with logit " + std::to_string(got) +
             ", the largest is " + std::to_string(best) + " (token " + std::to_string(logits.argmax().item<int64_t>()) +
             ")";
    }
    tokens.push_back(token);
    if (static_cast<int64_t>(tokens.size()) - start > context) {
      start = static_cast<int64_t>(tokens.size()) - std::max<int64_t>(1, context / 2);
    }
  }
  return "";
}

/// Greedy generation of prompts of different lengths (one longer than the context) in one
/// batch, past the context: every sequence as whole forward passes would continue it.
inline void expect_batched_greedy_generation_follows_forward_passes(nn::TransformerLMImpl& model, double tolerance,
                                                                    bool cuda_graph = true) {
  const int64_t vocab = model.options.vocab_size(), context = model.options.context();
  std::vector<torch::Tensor> prompts;
  for (const int64_t length : {int64_t{1}, int64_t{5}, context + 4}) {
    prompts.push_back(torch::randint(0, vocab, {length}, torch::kLong));
  }
  const auto options = nn::GenerateOptions().max_new_tokens(2 * context + 3).temperature(0).cuda_graph(cuda_graph);
  const auto generated = nn::generate(model, prompts, options);
  ASSERT_EQ(generated.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(generated[i].numel(), options.max_new_tokens());
    EXPECT_EQ(generated[i].device(), torch::Device(torch::kCPU));
    EXPECT_EQ(greedy_tokens_mismatch(model, prompts[i], generated[i], tolerance), "")
        << "sequence " << i << " (prompt of " << prompts[i].numel() << ")";
  }
}

/// A Decoder of three sequences at different positions against a Decoder of each alone, fed
/// the same tokens: logits within `tolerance` (times their magnitude) over several steps.
inline void expect_batch_decoding_equals_each_sequence_alone(nn::TransformerLMImpl& model, torch::Dtype cache_dtype,
                                                             double tolerance) {
  const torch::NoGradGuard no_grad;
  const auto device = model.embedding->weight.device();
  const int64_t vocab = model.options.vocab_size();
  const std::vector<int64_t> lengths = {3, 1, 7};
  const auto batch = static_cast<int64_t>(lengths.size());
  nn::Decoder together(model, batch, cache_dtype);
  std::vector<std::unique_ptr<nn::Decoder>> alone;
  for (int64_t i = 0; i < batch; ++i) {
    alone.push_back(std::make_unique<nn::Decoder>(model, 1, cache_dtype));
    const auto prompt = torch::randint(0, vocab, {lengths[static_cast<size_t>(i)]}, torch::kLong);
    together.prefill(i, prompt);
    alone.back()->prefill(0, prompt);
  }
  for (int step = 0; step < 6; ++step) {
    const auto tokens = torch::randint(0, vocab, {batch}, torch::TensorOptions().dtype(torch::kLong).device(device));
    const auto logits = together.step(tokens).to(torch::kDouble).cpu();
    for (int64_t i = 0; i < batch; ++i) {
      const auto want = alone[static_cast<size_t>(i)]->step(tokens.narrow(0, i, 1)).to(torch::kDouble).cpu()[0];
      const double error = (logits[i] - want).abs().max().item<double>();
      EXPECT_LE(error, tolerance * std::max(1.0, want.abs().max().item<double>()))
          << "step " << step << ", sequence " << i;
      EXPECT_EQ(together.length(i), lengths[static_cast<size_t>(i)] + step + 1);
    }
  }
}

}  // namespace bittorch::testing
