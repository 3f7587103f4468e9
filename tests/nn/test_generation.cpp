// nn::generate and nn::Decoder on the CPU: batched greedy generation against whole forward
// passes (past the context, prompts of different lengths, the fused decode step and the path
// through forward for grouped-query attention, full-precision, ternary and packed models), a
// batch against each sequence alone, sampled tokens as a forward loop draws them, determinism,
// and bad input (the sampler's own cases: tests/ops/test_sample_tokens.cpp).

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "nn/generation_check.h"
#include "nn/transformer_models.h"
#include "reference.h"

namespace {

using bittorch::testing::random_model;
using bittorch::testing::throws_error_mentioning;
using bittorch::testing::toy_options;
namespace bn = bittorch::nn;

TEST(Generation, GreedyBatchesFollowWholeForwardPasses) {
  torch::manual_seed(80);
  auto model = random_model(toy_options(), torch::kFloat, 81);
  model->eval();
  ASSERT_TRUE(model->decode_step_supported(torch::kCPU));
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*model, 1e-5);
  // Grouped-query attention: decode_step declines it, so each sequence goes through forward.
  auto grouped = random_model(toy_options().heads(4).kv_heads(2).width(16), torch::kFloat, 82);
  grouped->eval();
  ASSERT_FALSE(grouped->decode_step_supported(torch::kCPU));
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*grouped, 1e-5);
  // Ternary layers (their quantized weights kept while generating), then packed.
  const auto config = bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean);
  bn::convert_to_ternary(*model, config, bn::is_transformer_projection);
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*model, 1e-5);
  bittorch::pack(*model);
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*model, 1e-5);
}

TEST(Generation, ABatchDecodesAsEachSequenceAlone) {
  torch::manual_seed(83);
  auto model = random_model(toy_options(), torch::kFloat, 84);
  model->eval();
  bittorch::testing::expect_batch_decoding_equals_each_sequence_alone(*model, torch::kFloat, 1e-5);
  auto grouped = random_model(toy_options().heads(4).kv_heads(2).width(16), torch::kFloat, 85);
  grouped->eval();
  bittorch::testing::expect_batch_decoding_equals_each_sequence_alone(*grouped, torch::kFloat, 1e-5);
}

TEST(Generation, SamplingIsDeterministicForASeed) {
  auto model = random_model(toy_options(), torch::kFloat, 5);
  model->eval();
  const auto prompt = torch::tensor(std::vector<int64_t>{1, 2, 3});
  const auto options = bn::GenerateOptions().max_new_tokens(30).temperature(0.8).top_k(5).seed(9);
  const auto first = bn::generate(*model, prompt, options);
  ASSERT_EQ(first.numel(), 30);  // past the context of 16: generation went on from its last half
  EXPECT_TRUE(torch::equal(first, bn::generate(*model, prompt, options)));
  EXPECT_FALSE(torch::equal(first, bn::generate(*model, prompt, bn::GenerateOptions(options).seed(10))));
  // Greedy: each token is the argmax of a whole forward pass over the sequence so far.
  const auto greedy = bn::generate(*model, prompt, bn::GenerateOptions().max_new_tokens(8).temperature(0));
  auto sequence = prompt.clone();
  for (int64_t i = 0; i < 8; ++i) {
    const auto next = model->forward(sequence.unsqueeze(0))[0][-1].argmax();
    EXPECT_EQ(greedy[i].item<int64_t>(), next.item<int64_t>()) << i;
    sequence = torch::cat({sequence, next.unsqueeze(0)});
  }
  // top_k 1 is greedy too.
  EXPECT_TRUE(
      torch::equal(bn::generate(*model, prompt, bn::GenerateOptions().max_new_tokens(8).top_k(1).seed(3)), greedy));
}

// The decoder samples inside its step (set_sampler): the tokens are the draws a loop of whole
// forward passes and sample_tokens makes with a generator seeded alike, in the same order.
TEST(Generation, SampledTokensAreTheDrawsOfAForwardLoop) {
  auto model = random_model(toy_options(), torch::kDouble, 7);
  model->eval();
  const std::vector<int64_t> prompt = {4, 1, 7};
  const auto options = bn::GenerateOptions().max_new_tokens(12).temperature(0.8).top_k(5).seed(11);
  const auto generated = bn::generate(*model, torch::tensor(prompt), options);
  auto generator = at::globalContext().defaultGenerator(torch::kCPU).clone();
  generator.set_current_seed(11);
  std::vector<int64_t> tokens = prompt;
  const torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < options.max_new_tokens(); ++i) {  // 3 + 12 tokens: within the context of 16
    const auto logits = model->forward(torch::tensor(tokens).unsqueeze(0)).select(1, -1);
    tokens.push_back(bn::sample_tokens(logits, 0.8, 5, generator).item<int64_t>());
  }
  EXPECT_TRUE(torch::equal(generated, torch::tensor(std::vector<int64_t>(tokens.begin() + 3, tokens.end()))))
      << generated << tokens;
}

// set_sampler comes before the first step; sampled() needs a sampler and a step.
TEST(Generation, TheDecodersSamplerIsSetFirst) {
  auto model = random_model(toy_options(), torch::kFloat, 8);
  model->eval();
  bn::Decoder decoder(*model, 1, torch::kFloat);
  const auto argmax = [](const at::Tensor& logits) { return logits.argmax(-1); };
  auto generator = at::globalContext().defaultGenerator(torch::kCPU).clone();
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.sampled(); }, {"no sampler"}));
  decoder.set_sampler(argmax, generator);
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.sampled(); }, {"no step"}));
  decoder.prefill(0, torch::tensor(std::vector<int64_t>{1, 2}));
  const auto logits = decoder.step(torch::tensor(std::vector<int64_t>{3}));
  EXPECT_TRUE(torch::equal(decoder.sampled(), logits.argmax(-1)));
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.set_sampler(argmax, generator); }, {"before the first step"}));
}

TEST(Generation, BadInputIsAnErrorNamingIt) {
  auto model = random_model(toy_options(), torch::kFloat, 86);
  model->eval();
  const auto prompt = torch::tensor({1, 2});
  EXPECT_TRUE(throws_error_mentioning([&] { bn::generate(*model, std::vector<torch::Tensor>{}, {}); },
                                      {"at least one prompt"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bn::generate(*model, std::vector<torch::Tensor>{prompt, torch::tensor(std::vector<int64_t>{})}, {});
      },
      {"non-empty int64 prompts", "prompt 1"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bn::generate(*model, prompt, bn::GenerateOptions().temperature(-1)); },
                                      {"temperature must be >= 0"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bn::generate(*model, prompt, bn::GenerateOptions().top_k(-2)); },
                                      {"top_k must be >= 0"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bn::Decoder(*model, 0, torch::kFloat); }, {"batch must be >= 1"}));
  bn::Decoder decoder(*model, 2, torch::kFloat);
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.prefill(2, prompt); }, {"sequence 2", "batch of 2"}));
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.prefill(0, torch::zeros({17}, torch::kLong)); },
                                      {"T <= the context of 16", "[17]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.step(torch::zeros({3}, torch::kLong)); }, {"tokens [2]", "[3]"}));
  decoder.prefill(1, torch::zeros({16}, torch::kLong));
  EXPECT_TRUE(throws_error_mentioning([&] { decoder.step(torch::zeros({2}, torch::kLong)); },
                                      {"sequence 1 fills the context of 16", "shorter window"}));
  EXPECT_EQ(decoder.length(1), 16);
  EXPECT_EQ(decoder.length(0), 0);
  EXPECT_EQ(decoder.graph_nodes(), 0);
}

}  // namespace
