// nn::fuse_projections: q, k and v (and a gated MLP's gate and up) joined into one layer give
// the unjoined model's logits, packed and full precision; the parts' weights become views of
// the joined layer's (held once, saved unchanged); a model moved after the join computes
// through its parts again, and training is untouched.

#include "nn/transformer_models.h"
#include "temp_dir.h"

#include <bittorch/bittorch.h>
#include <bittorch/nn/fused_projections.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace bn = bittorch::nn;
using bittorch::testing::random_model;
using bittorch::testing::toy_options;

bn::TransformerLM packed_model(const bn::TransformerOptions& options, const bittorch::quant::QuantConfig& config,
                               uint64_t seed) {
  auto model = random_model(options, torch::kFloat, seed);
  bn::convert_to_ternary(*model, config, bn::is_transformer_projection);
  bn::pack(*model);
  model->eval();
  return model;
}

// The logits of a prefill of `tokens` and of one decode step after it, gradients off.
std::pair<torch::Tensor, torch::Tensor> prefill_and_step(bn::TransformerLM& model, const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  auto cache = model->make_cache(tokens.size(0), torch::TensorOptions().dtype(torch::kFloat));
  const auto prefill = model->forward(tokens, &cache);
  const auto step = model->decode_step(tokens.narrow(1, 0, 1), torch::full({1}, tokens.size(1), torch::kLong), cache);
  return {prefill, step};
}

const bn::PackedTernaryLinearImpl& packed_projection(bn::TransformerLM& model, const std::string& path) {
  return *model->named_modules()[path]->as<bn::PackedTernaryLinearImpl>();
}

TEST(FusedProjections, PackedModelsGiveTheUnjoinedLogits) {
  const auto abs_mean = bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean);
  for (const auto mlp : {bn::MlpKind::SquaredReLU, bn::MlpKind::SwiGLU}) {
    for (const int64_t activation_bits : {0, 8}) {
      const auto what = ::testing::Message() << bn::to_string(mlp) << ", activation bits " << activation_bits;
      const auto config = bittorch::quant::QuantConfig(abs_mean).activation_bits(activation_bits);
      auto model = packed_model(toy_options(mlp), config, 30);
      const auto tokens = torch::randint(0, 11, {2, 7});
      const auto [prefill, step] = prefill_and_step(model, tokens);
      const auto state = model->named_buffers();
      std::map<std::string, torch::Tensor> before;
      for (const auto& item : state) before[item.key()] = item.value().clone();

      const int64_t groups_per_block = mlp == bn::MlpKind::SquaredReLU ? 1 : 2;
      EXPECT_EQ(bn::fuse_projections(*model), 2 * groups_per_block) << what;
      EXPECT_EQ(bn::fuse_projections(*model), 2 * groups_per_block) << what << ": joined again";
      const auto [fused_prefill, fused_step] = prefill_and_step(model, tokens);
      EXPECT_TRUE(torch::allclose(fused_prefill, prefill, 1e-5, 1e-5)) << what << (fused_prefill - prefill).abs().max();
      EXPECT_TRUE(torch::allclose(fused_step, step, 1e-5, 1e-5)) << what << (fused_step - step).abs().max();

      // The model's state is what it was, and q, k and v are rows of one tensor.
      for (const auto& item : model->named_buffers()) {
        EXPECT_TRUE(torch::equal(item.value(), before.at(item.key()))) << what << ": " << item.key();
      }
      const auto& q = packed_projection(model, "blocks.0.attention.q");
      const auto& v = packed_projection(model, "blocks.0.attention.v");
      EXPECT_TRUE(q.packed.storage().is_alias_of(v.packed.storage())) << what;
      EXPECT_EQ(static_cast<int64_t>(q.packed.storage().nbytes()), 3 * q.packed.numel() * 4) << what;
      EXPECT_EQ(v.packed.storage_offset(), 2 * q.packed.numel()) << what;
    }
  }
}

TEST(FusedProjections, AJoinedModelSavesAndLoadsAsBefore) {
  bittorch::testing::TempDir dir;
  const auto options = toy_options(bn::MlpKind::SwiGLU);
  auto model = packed_model(options, bittorch::quant::QuantConfig(), 31);
  bittorch::save_packed(*model, dir.file("before.btp"));
  bn::fuse_projections(*model);
  bittorch::save_packed(*model, dir.file("after.btp"));
  const auto tokens = torch::randint(0, 11, {1, 9});
  const auto want = model->forward(tokens);
  for (const char* name : {"before.btp", "after.btp"}) {
    auto loaded = bittorch::load_packed_transformer(dir.file(name));
    EXPECT_TRUE(torch::allclose(loaded->forward(tokens), want, 1e-5, 1e-5)) << name;
  }
}

TEST(FusedProjections, FullPrecisionJoinsInInferenceAndTrainsThroughTheParts) {
  auto model = random_model(toy_options(bn::MlpKind::GatedSquaredReLU), torch::kFloat, 32);
  auto reference = random_model(toy_options(bn::MlpKind::GatedSquaredReLU), torch::kFloat, 32);
  model->eval();
  reference->eval();
  const auto tokens = torch::randint(0, 11, {2, 6});
  EXPECT_EQ(bn::fuse_projections(*model), 4);
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(model->forward(tokens), reference->forward(tokens), 1e-5, 1e-5));
  }
  // With gradients on the parts compute (the joined layer has no gradients): the same gradients.
  const auto targets = torch::randint(0, 11, {2, 6});
  model->loss(tokens, targets).backward();
  reference->loss(tokens, targets).backward();
  const auto want = reference->named_parameters();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::allclose(item.value().grad(), want[item.key()].grad(), 1e-5, 1e-6)) << item.key();
  }
  // An optimizer step writes the parts in place: the joined layer sees it.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.sub_(0.1 * p.grad());
    for (auto& p : reference->parameters()) p.sub_(0.1 * p.grad());
    EXPECT_TRUE(torch::allclose(model->forward(tokens), reference->forward(tokens), 1e-5, 1e-5));
  }
}

TEST(FusedProjections, AMovedModelComputesThroughItsPartsUntilJoinedAgain) {
  auto model = random_model(toy_options(), torch::kFloat, 33);
  auto reference = random_model(toy_options(), torch::kFloat, 33);
  model->eval();
  reference->eval();
  bn::fuse_projections(*model);
  model->to(torch::kDouble);  // new tensors for every part: the join is gone
  reference->to(torch::kDouble);
  const auto tokens = torch::randint(0, 11, {1, 5});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(model->forward(tokens), reference->forward(tokens), 1e-12, 1e-12));
  const auto* q = model->named_modules()["blocks.0.attention.q"]->as<torch::nn::LinearImpl>();
  const auto* k = model->named_modules()["blocks.0.attention.k"]->as<torch::nn::LinearImpl>();
  EXPECT_FALSE(q->weight.storage().is_alias_of(k->weight.storage()));
  EXPECT_EQ(bn::fuse_projections(*model), 2);
  EXPECT_TRUE(q->weight.storage().is_alias_of(k->weight.storage()));
  EXPECT_TRUE(torch::allclose(model->forward(tokens), reference->forward(tokens), 1e-12, 1e-12));
}

TEST(FusedProjections, UnlikePartsStaySeparate) {
  // q full precision, k and v packed: nothing to join, and the model computes as before.
  auto model = random_model(toy_options(), torch::kFloat, 34);
  bn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), [](const std::string& path, const auto& layer) {
    return bn::is_transformer_projection(path, layer) && path.find(".q") == std::string::npos;
  });
  bn::pack(*model);
  model->eval();
  const auto tokens = torch::randint(0, 11, {1, 5});
  const auto want = model->forward(tokens);
  EXPECT_EQ(bn::fuse_projections(*model), 0);
  EXPECT_TRUE(torch::equal(model->forward(tokens), want));
}

}  // namespace
