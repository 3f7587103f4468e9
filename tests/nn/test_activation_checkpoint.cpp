// nn::checkpointed and TransformerLM::set_activation_checkpointing: gradients equal to the
// plain backward's (inputs and parameters, under autocast too), the recomputation really in
// the graph, and a second backward refused.

#include <bittorch/bittorch.h>

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <set>
#include <string>

#include "nn/transformer_models.h"
#include "reference.h"

namespace {

namespace bn = bittorch::nn;

// The names of the autograd nodes reachable from `root`.
std::multiset<std::string> node_names(const torch::Tensor& root) {
  std::multiset<std::string> names;
  std::set<const torch::autograd::Node*> seen;
  std::function<void(const std::shared_ptr<torch::autograd::Node>&)> visit = [&](const auto& node) {
    if (node == nullptr || !seen.insert(node.get()).second) return;
    names.insert(node->name());
    for (const auto& edge : node->next_edges()) visit(edge.function);
  };
  visit(root.grad_fn());
  return names;
}

TEST(ActivationCheckpoint, GradientsEqualThePlainBackward) {
  torch::manual_seed(100);
  torch::nn::Linear first(6, 8), second(8, 5);
  first->to(torch::kDouble);
  second->to(torch::kDouble);
  const auto run = [&](const std::vector<torch::Tensor>& in) {
    const auto hidden = torch::relu(first->forward(in[0])) * in[1];
    return std::vector<torch::Tensor>{second->forward(hidden).tanh(), hidden.sum(-1)};
  };
  const auto x = torch::randn({4, 6}, torch::kDouble).requires_grad_();
  const auto gate = torch::rand({4, 8}, torch::kDouble).requires_grad_();
  const auto backward = [&](bool checkpoint) {
    for (auto* module : {static_cast<torch::nn::Module*>(first.get()), static_cast<torch::nn::Module*>(second.get())})
      module->zero_grad();
    x.mutable_grad() = torch::Tensor();
    gate.mutable_grad() = torch::Tensor();
    const auto outputs = checkpoint ? bn::checkpointed(run, {x, gate}) : run({x, gate});
    (outputs[0].square().sum() + 3 * outputs[1].sum()).backward();
    return std::vector<torch::Tensor>{x.grad().clone(), gate.grad().clone(), first->weight.grad().clone(),
                                      first->bias.grad().clone(), second->weight.grad().clone()};
  };
  const auto plain = backward(false), recomputed = backward(true);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(torch::allclose(plain[i], recomputed[i], 1e-12, 1e-12)) << i;

  // Under CPU autocast (bfloat16) the recomputation runs in the forward's autocast state.
  const auto at_bf16 = [&](bool checkpoint) {
    at::autocast::set_autocast_enabled(torch::kCPU, true);
    at::autocast::set_autocast_dtype(torch::kCPU, torch::kBFloat16);
    first->zero_grad();
    const auto outputs = checkpoint ? bn::checkpointed(run, {x.to(torch::kFloat), gate.to(torch::kFloat)})
                                    : run({x.to(torch::kFloat), gate.to(torch::kFloat)});
    at::autocast::set_autocast_enabled(torch::kCPU, false);  // the backward runs without it
    outputs[0].to(torch::kFloat).sum().backward();
    return first->weight.grad().clone();
  };
  first->to(torch::kFloat);
  second->to(torch::kFloat);
  EXPECT_TRUE(torch::equal(at_bf16(false), at_bf16(true)));

  // The graph is freed after one backward: a second is an error, not silently zero.
  const auto outputs = bn::checkpointed(run, {x.to(torch::kFloat), gate.to(torch::kFloat)});
  const auto loss = outputs[0].sum();
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_TRUE(bittorch::testing::throws_error_mentioning([&] { loss.backward(); }, {"backward ran twice"}));
  // Gradients off: run as it is.
  const torch::NoGradGuard no_grad;
  EXPECT_FALSE(bn::checkpointed(run, {x.to(torch::kFloat), gate.to(torch::kFloat)})[0].requires_grad());
}

TEST(ActivationCheckpoint, TheModelsGradientsAreThePlainOnes) {
  for (const bool ternary : {false, true}) {
    for (const bool fused : {true, false}) {
      auto model = bittorch::testing::random_model(bittorch::testing::toy_options().layers(3),
                                                   ternary ? torch::kFloat : torch::kDouble, 101);
      if (ternary) bn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), bn::is_transformer_projection);
      model->set_fused_ops(fused);
      const auto tokens = torch::randint(0, 11, {2, 9}), targets = torch::randint(0, 11, {2, 9});
      const auto gradients = [&](bool checkpoint) {
        model->set_activation_checkpointing(checkpoint);
        model->zero_grad();
        const auto loss = model->loss(tokens, targets);
        const auto recomputing = node_names(loss).count("bittorch::nn::RecomputeBackward");
        EXPECT_EQ(recomputing, checkpoint ? 3U : 0U) << "ternary " << ternary << " fused " << fused;
        loss.backward();
        return std::pair{loss.detach(), bittorch::testing::gradients_by_name(*model)};
      };
      const auto [plain_loss, plain] = gradients(false);
      const auto [loss, recomputed] = gradients(true);
      const double tol = ternary ? 1e-6 : 1e-12;
      EXPECT_TRUE(torch::equal(loss, plain_loss));
      for (const auto& [name, grad] : plain) {
        EXPECT_TRUE(torch::allclose(recomputed.at(name), grad, tol, tol))
            << name << ", ternary " << ternary << " fused " << fused;
      }
    }
  }
}

}  // namespace
