// train::Trainer with TrainerOptions::cuda_graph on CUDA: the steps replayed from the recorded
// graph against the same steps run eagerly (each step's loss and the final weights), for a
// full-precision model and a ternary one with 8-bit activations under BF16 autocast, with
// gradient accumulation, clipping, activation checkpointing and a rate that changes at every
// step; checkpointed steps against plain ones; and what cuda_graph refuses.

#include <bittorch/bittorch.h>
#include <bittorch/train.h>

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "nn/transformer_models.h"
#include "reference.h"

namespace {

namespace bn = bittorch::nn;
namespace train = bittorch::train;

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

constexpr int64_t kSteps = 7, kBatch = 4;

struct Variant {
  bool ternary = false;
  int64_t accumulation = 1;
  bool checkpoint_activations = false;
};

struct Run {
  std::vector<double> step_losses;
  std::map<std::string, torch::Tensor> weights;
};

Run train_model(const Variant& variant, bool cuda_graph) {
  const auto options = bittorch::testing::toy_options().vocab_size(40).width(64).heads(4).context(32);
  torch::manual_seed(3);
  bn::TransformerLM model(options);
  if (variant.ternary) {
    bn::convert_to_ternary(
        *model, bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean).activation_bits(8),
        bn::is_transformer_projection);
  }
  model->set_activation_checkpointing(variant.checkpoint_activations);
  model->to(torch::kCUDA);
  train::FusedAdamW optimizer(model->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.1));
  train::Trainer trainer(
      *model, optimizer,
      train::TrainerOptions(kSteps, 4)
          .accumulation_steps(variant.accumulation)
          .max_grad_norm(0.5)
          .schedule(train::LrScheduleOptions().warmup_steps(2).total_steps(kSteps).decay(train::LrDecay::Cosine))
          .progress(train::ProgressStyle::None)
          .device(torch::kCUDA)
          .cuda_graph(cuda_graph));
  // Every micro-batch of the run is another one.
  const auto corpus =
      torch::randint(options.vocab_size(), {kSteps * variant.accumulation, kBatch, options.context() + 1},
                     torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  std::vector<torch::Tensor> inputs(static_cast<size_t>(variant.accumulation)), targets(inputs);
  train::TrainerHooks hooks;
  hooks.load_batch = [&](const train::StepContext& c) {
    const auto windows = corpus[c.step * variant.accumulation + c.micro_step];
    auto& in = inputs[static_cast<size_t>(c.micro_step)];
    auto& out = targets[static_cast<size_t>(c.micro_step)];
    if (!in.defined()) {
      in = torch::empty({kBatch, options.context()}, windows.options());
      out = torch::empty_like(in);
    }
    in.copy_(windows.narrow(1, 0, options.context()));
    out.copy_(windows.narrow(1, 1, options.context()));
  };
  Run run;
  hooks.step = [&](const train::StepContext& c) {
    const train::AutocastScope autocast(torch::kCUDA, true);
    const auto& in = inputs[static_cast<size_t>(c.micro_step)];
    return train::StepOutput{model->loss(in, targets[static_cast<size_t>(c.micro_step)]), in.numel()};
  };
  const auto& history = trainer.fit(hooks);
  for (const auto& record : history) {
    for (const auto& loss : record.at("step_losses")) run.step_losses.push_back(loss.get<double>());
  }
  for (const auto& p : model->named_parameters()) run.weights[p.key()] = p.value().detach().cpu();
  return run;
}

// The replayed steps do what the eager ones do. Bit-equality is not the contract (the
// attention's backward may add with atomics), so each loss within 1e-3 relative, and the
// weights after the run within 1e-3: a replay of a stale batch, gradient or rate is off by more.
TEST(TrainerCuda, StepsReplayedFromAGraphEqualEagerSteps) {
  SKIP_WITHOUT_CUDA();
  for (const Variant variant :
       {Variant{false, 1, false}, Variant{true, 1, false}, Variant{true, 2, false}, Variant{false, 1, true}}) {
    const std::string what = std::string(variant.ternary ? "ternary a8" : "fp") + ", accumulation " +
                             std::to_string(variant.accumulation) +
                             (variant.checkpoint_activations ? ", checkpointed" : "");
    const auto eager = train_model(variant, false);
    const auto graph = train_model(variant, true);
    ASSERT_EQ(eager.step_losses.size(), static_cast<size_t>(kSteps)) << what;
    ASSERT_EQ(graph.step_losses.size(), static_cast<size_t>(kSteps)) << what;
    for (int64_t s = 0; s < kSteps; ++s) {
      EXPECT_NEAR(graph.step_losses[s], eager.step_losses[s], 1e-3 * std::abs(eager.step_losses[s]))
          << what << ", step " << s;
    }
    for (const auto& [name, weight] : eager.weights) {
      EXPECT_TRUE(torch::allclose(graph.weights.at(name), weight, 1e-3, 1e-4))
          << what << ", " << name << ": largest difference "
          << (graph.weights.at(name) - weight).abs().max().item<double>();
    }
  }
}

// Checkpointed blocks train as plain ones do under autocast: the backward's recomputation must
// not leave casts of this step's weights in autocast's cache for the next forward to read (a
// forward on weights one step old is off by more than these tolerances from the second step).
TEST(TrainerCuda, CheckpointedStepsEqualPlainSteps) {
  SKIP_WITHOUT_CUDA();
  const auto plain = train_model(Variant{false, 1, false}, false);
  const auto checkpointed = train_model(Variant{false, 1, true}, false);
  ASSERT_EQ(checkpointed.step_losses.size(), plain.step_losses.size());
  for (size_t s = 0; s < plain.step_losses.size(); ++s) {
    EXPECT_NEAR(checkpointed.step_losses[s], plain.step_losses[s], 1e-4 * std::abs(plain.step_losses[s]))
        << "step " << s;
  }
  for (const auto& [name, weight] : plain.weights) {
    EXPECT_TRUE(torch::allclose(checkpointed.weights.at(name), weight, 1e-3, 1e-4))
        << name << ": largest difference " << (checkpointed.weights.at(name) - weight).abs().max().item<double>();
  }
}

TEST(TrainerCuda, CudaGraphNeedsLoadBatch) {
  SKIP_WITHOUT_CUDA();
  torch::nn::Linear model(3, 2);
  model->to(torch::kCUDA);
  train::FusedAdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  train::Trainer trainer(
      *model, optimizer,
      train::TrainerOptions(4, 2).progress(train::ProgressStyle::None).device(torch::kCUDA).cuda_graph(true));
  train::TrainerHooks hooks;
  hooks.step = [&](const train::StepContext&) {
    return train::StepOutput{model->forward(torch::ones({1, 3}, torch::kCUDA)).sum(), 1};
  };
  EXPECT_TRUE(bittorch::testing::throws_error_mentioning([&] { trainer.fit(hooks); }, {"cuda_graph", "load_batch"}));
}

}  // namespace
