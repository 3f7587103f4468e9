// nn::generate and nn::Decoder on CUDA: the decode step replayed from a CUDA graph against the
// same steps run eagerly (equal), batched greedy generation against whole forward passes, a
// batch against each sequence alone, and determinism for a seed, for full-precision and packed
// models; q, k and v joined into one layer (nn::fuse_projections) against the parts.

#include <bittorch/bittorch.h>
#include <bittorch/nn/fused_projections.h>

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "nn/generation_check.h"
#include "nn/transformer_models.h"

namespace {

namespace bn = bittorch::nn;

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

bn::TransformerOptions cuda_options() {
  return bittorch::testing::toy_options().vocab_size(40).width(64).heads(4).context(32);
}

// A model on the GPU in `dtype`: full precision, or ternary packed (embedding, norms and head
// in `dtype`).
bn::TransformerLM cuda_model(bool packed, torch::Dtype dtype, uint64_t seed) {
  auto model = bittorch::testing::random_model(cuda_options(), torch::kFloat, seed);
  model->eval();
  if (packed) {
    bn::convert_to_ternary(*model, bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean),
                           bn::is_transformer_projection);
    bittorch::pack(*model);
  }
  model->to(torch::kCUDA, dtype);
  return model;
}

TEST(GenerationCuda, AGraphReplaysTheEagerSteps) {
  SKIP_WITHOUT_CUDA();
  for (const bool packed : {false, true}) {
    auto model = cuda_model(packed, torch::kBFloat16, 90);
    torch::manual_seed(91);
    const auto prompts =
        std::vector<torch::Tensor>{torch::randint(0, 40, {3}, torch::kLong), torch::randint(0, 40, {9}, torch::kLong)};
    // Decoders fed the same tokens: the graph's logits are the eager ones, bit for bit.
    bn::Decoder graphed(*model, 2, torch::kBFloat16), eager(*model, 2, torch::kBFloat16, /*cuda_graph=*/false);
    for (int64_t i = 0; i < 2; ++i) {
      graphed.prefill(i, prompts[static_cast<size_t>(i)]);
      eager.prefill(i, prompts[static_cast<size_t>(i)]);
    }
    for (int step = 0; step < 5; ++step) {
      const auto tokens = torch::randint(0, 40, {2}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
      EXPECT_TRUE(torch::equal(graphed.step(tokens), eager.step(tokens))) << "packed " << packed << " step " << step;
    }
    EXPECT_GT(graphed.graph_nodes(), 0);
    EXPECT_EQ(eager.graph_nodes(), 0);
    // generate, greedy and sampled, past the context (refills between replays).
    for (const double temperature : {0.0, 0.9}) {
      const auto options = bn::GenerateOptions().max_new_tokens(70).temperature(temperature).top_k(8).seed(4);
      const auto with_graph = bn::generate(*model, prompts, options);
      const auto without = bn::generate(*model, prompts, bn::GenerateOptions(options).cuda_graph(false));
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_TRUE(torch::equal(with_graph[i], without[i])) << "packed " << packed << " temperature " << temperature;
        EXPECT_TRUE(torch::equal(with_graph[i], bn::generate(*model, prompts, options)[i])) << "not deterministic";
      }
    }
  }
}

TEST(GenerationCuda, GreedyBatchesFollowWholeForwardPasses) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(92);
  auto full = cuda_model(false, torch::kFloat, 93);
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*full, 1e-4);
  auto packed = cuda_model(true, torch::kBFloat16, 94);
  bittorch::testing::expect_batched_greedy_generation_follows_forward_passes(*packed, 5e-2);
}

TEST(GenerationCuda, ABatchDecodesAsEachSequenceAlone) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(95);
  auto full = cuda_model(false, torch::kFloat, 96);
  bittorch::testing::expect_batch_decoding_equals_each_sequence_alone(*full, torch::kFloat, 1e-4);
  auto packed = cuda_model(true, torch::kBFloat16, 97);
  bittorch::testing::expect_batch_decoding_equals_each_sequence_alone(*packed, torch::kBFloat16, 5e-2);
}

// The packed decode step with each residual add and norm inside the next projection's kernel
// (ops::add_rms_norm_packed_linear, replayed from a graph) against the plain blocks (a norm
// kernel each, eager), fed the same tokens: logits within bfloat16's rounding over
// 64 steps.
TEST(GenerationCuda, NormsInsideThePackedProjectionsFollowThePlainBlocks) {
  SKIP_WITHOUT_CUDA();
  auto model = cuda_model(true, torch::kBFloat16, 99);
  torch::manual_seed(100);
  const auto prompt = torch::randint(0, 40, {5}, torch::kLong);
  bn::Decoder fused(*model, 1, torch::kBFloat16), plain(*model, 1, torch::kBFloat16, /*cuda_graph=*/false);
  fused.prefill(0, prompt);
  plain.prefill(0, prompt);
  double largest_error = 0;
  for (int step = 0; step < 64; ++step) {
    const auto tokens = torch::randint(0, 40, {1}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
    model->set_fused_ops(true);
    const auto fused_logits = fused.step(tokens).to(torch::kDouble);
    model->set_fused_ops(false);
    const auto plain_logits = plain.step(tokens).to(torch::kDouble);
    const double magnitude = std::max(1.0, plain_logits.abs().max().item<double>());
    largest_error = std::max(largest_error, (fused_logits - plain_logits).abs().max().item<double>() / magnitude);
    if (fused.length(0) == 32) {  // the context is full: both go on from the same window
      fused.prefill(0, prompt);
      plain.prefill(0, prompt);
    }
  }
  model->set_fused_ops(true);
  EXPECT_LE(largest_error, 5e-2);
  EXPECT_GT(fused.graph_nodes(), 0);
}

TEST(GenerationCuda, JoinedProjectionsGiveThePartsLogits) {
  SKIP_WITHOUT_CUDA();
  for (const bool packed : {false, true}) {
    auto model = cuda_model(packed, torch::kBFloat16, 98);
    torch::NoGradGuard no_grad;
    const auto tokens = torch::randint(0, 40, {3, 9}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
    const auto step = [&] {
      auto cache = model->make_cache(3, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA));
      model->forward(tokens, &cache);
      const auto position = torch::full({1}, 9, tokens.options());
      return std::make_pair(model->forward(tokens), model->decode_step(tokens.narrow(1, 0, 1), position, cache));
    };
    const auto [prefill, decoded] = step();
    ASSERT_EQ(bn::fuse_projections(*model), 2) << "packed " << packed;
    const auto [joined_prefill, joined_decoded] = step();
    // bfloat16 outputs: kernels may split and block a matrix of three times the rows
    // differently, which changes the rounding (as other batch sizes do).
    const double tolerance = 3e-2;
    EXPECT_TRUE(torch::allclose(joined_prefill.to(torch::kFloat), prefill.to(torch::kFloat), tolerance, tolerance))
        << "packed " << packed << ": " << (joined_prefill - prefill).abs().max();
    EXPECT_TRUE(torch::allclose(joined_decoded.to(torch::kFloat), decoded.to(torch::kFloat), tolerance, tolerance))
        << "packed " << packed << ": " << (joined_decoded - decoded).abs().max();
  }
}

}  // namespace
