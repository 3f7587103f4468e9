// convert_to_ternary and pack on module trees: Linear layers nested in a module of our own
// inside a Sequential, checked against the reference ternary layer written from the formulas.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::testing::reference_ternarize;
using bittorch::testing::reference_ternary_linear;
using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;

// A residual block of our own: fc1 is called through an AnyModule member, which
// replace_child re-points; the tail is a Sequential member, changed in place.
class BlockImpl : public torch::nn::Module, public bittorch::nn::ReplaceableChildren {
 public:
  explicit BlockImpl(int64_t features)
      : fc1_(torch::nn::Linear(features, 2 * features)),
        tail_(register_module("tail",
                              torch::nn::Sequential(torch::nn::ReLU(), torch::nn::Linear(2 * features, features)))) {
    register_module("fc1", fc1_.ptr());
  }
  torch::Tensor forward(const torch::Tensor& x) { return x + tail_->forward(fc1_.forward(x)); }
  void replace_child(const std::string& name, const torch::nn::AnyModule& module) override {
    TORCH_CHECK(name == "fc1", "BlockImpl: no replaceable child ", name);
    replace_module(name, module.ptr());
    fc1_ = module;
  }

 private:
  torch::nn::AnyModule fc1_;
  torch::nn::Sequential tail_;
};
TORCH_MODULE(Block);

// The same block without ReplaceableChildren: its Linear members cannot be swapped.
struct PlainBlockImpl : torch::nn::Module {
  PlainBlockImpl() : fc(register_module("fc", torch::nn::Linear(4, 4))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc(x); }
  torch::nn::Linear fc;
};
TORCH_MODULE(PlainBlock);

torch::nn::Sequential nested_model() {
  return torch::nn::Sequential(torch::nn::Linear(12, 16), torch::nn::ReLU(), Block(16), torch::nn::Linear(16, 4));
}

// The model's output computed layer by layer from the reference ternary layer in double, with
// the weights and biases named by path.
torch::Tensor reference_output(const torch::Tensor& x, const torch::OrderedDict<std::string, torch::Tensor>& p,
                               const bittorch::quant::QuantConfig& config) {
  const auto layer = [&](const torch::Tensor& input, const std::string& name) {
    const auto& w = p[name + ".weight"];
    const auto q = reference_ternarize(w, config.threshold_factor(), config.per_channel(),
                                       config.scale_mode() == bittorch::quant::ScaleMode::AbsMean, torch::kFloat);
    return reference_ternary_linear(input, w, p[name + ".bias"], {}, q).output;
  };
  auto h = torch::relu(layer(x, "0"));
  h = h + layer(torch::relu(layer(h, "2.fc1")), "2.tail.1");
  return layer(h, "3");
}

TEST(ModuleTree, ConvertTrainPackMatchesTheReferenceAtEveryDepth) {
  torch::manual_seed(61);
  auto model = nested_model();
  const auto config = bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean);
  const auto linear_weights = model->named_parameters();
  EXPECT_EQ(bittorch::nn::convert_to_ternary(*model, config), 4);
  for (const auto& module : model->modules()) EXPECT_EQ(module->as<torch::nn::Linear>(), nullptr) << module->name();
  // The parameters are copies of the Linear layers' ones, under the same names.
  const auto params = model->named_parameters();
  ASSERT_EQ(params.keys(), linear_weights.keys());
  for (const auto& item : params) EXPECT_TRUE(torch::equal(item.value(), linear_weights[item.key()])) << item.key();

  const auto x = torch::randn({6, 12});
  auto expected = reference_output(x, model->named_parameters(), config);
  EXPECT_TRUE(torch::allclose(model->forward(x).to(torch::kDouble), expected, 1e-5, 1e-5));

  // One training step changes every ternary layer's master weight, through the nested ones.
  torch::optim::SGD optimizer(model->parameters(), 0.5);
  const auto before = model->named_parameters();
  std::vector<torch::Tensor> copies;
  for (const auto& item : before) copies.push_back(item.value().clone());
  model->forward(x).pow(2).sum().backward();
  optimizer.step();
  for (size_t i = 0; i < copies.size(); ++i)
    EXPECT_FALSE(torch::equal(copies[i], before[i].value())) << before[i].key();

  torch::NoGradGuard no_grad;
  expected = reference_output(x, model->named_parameters(), config);
  const auto ternary_output = model->forward(x);
  EXPECT_TRUE(torch::allclose(ternary_output.to(torch::kDouble), expected, 1e-5, 1e-5));
  EXPECT_EQ(bittorch::pack(*model), 4);
  int packed_layers = 0;
  for (const auto& module : model->modules()) {
    EXPECT_EQ(module->as<bittorch::nn::TernaryLinear>(), nullptr) << module->name();
    packed_layers += module->as<bittorch::nn::PackedTernaryLinear>() != nullptr;
  }
  EXPECT_EQ(packed_layers, 4);
  EXPECT_TRUE(model->named_parameters().is_empty());
  const auto packed_output = model->forward(x);
  EXPECT_TRUE(torch::allclose(packed_output, ternary_output, 1e-5, 1e-5));

  // Saved and loaded into a model of the same tree (built, converted and packed as this one).
  TempDir dir;
  bittorch::save_packed(*model, dir.file("tree.btp"));
  auto loaded = nested_model();
  bittorch::nn::convert_to_ternary(*loaded, config);
  bittorch::pack(*loaded);
  bittorch::load_packed_into(*loaded, dir.file("tree.btp"));
  EXPECT_TRUE(torch::equal(loaded->forward(x), packed_output));
  // A model of another tree is refused, and left as it was.
  auto other = torch::nn::Sequential(torch::nn::Linear(12, 16), torch::nn::ReLU(), Block(16), torch::nn::Linear(16, 5));
  bittorch::nn::convert_to_ternary(*other, config);
  bittorch::pack(*other);
  const auto other_before = other->named_buffers()["0.packed"].clone();
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed_into(*other, dir.file("tree.btp")); },
                                      {"load_packed_into", "module '3'", "differs"}));
  EXPECT_TRUE(torch::equal(other->named_buffers()["0.packed"], other_before));
  // load_packed cannot rebuild a module of our own.
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.file("tree.btp")); },
                                      {"module '2'", "load_packed_into"}));
}

TEST(ModuleTree, FilterPicksLayersByPath) {
  auto model = nested_model();
  const auto converted = bittorch::nn::convert_to_ternary(
      *model, {}, [](const std::string& path, const torch::nn::LinearImpl&) { return path.rfind("2.", 0) == 0; });
  EXPECT_EQ(converted, 2);
  const auto children = model->named_modules();
  EXPECT_NE(children["2.fc1"]->as<bittorch::nn::TernaryLinear>(), nullptr);
  EXPECT_NE(children["2.tail.1"]->as<bittorch::nn::TernaryLinear>(), nullptr);
  EXPECT_NE(children["0"]->as<torch::nn::Linear>(), nullptr);
  EXPECT_NE(children["3"]->as<torch::nn::Linear>(), nullptr);
}

TEST(ModuleTree, ALayerItsParentCannotSwapIsAnErrorNamingIt) {
  torch::nn::Sequential model(PlainBlock(), torch::nn::Linear(4, 2));
  EXPECT_TRUE(
      throws_error_mentioning([&] { bittorch::nn::convert_to_ternary(*model); }, {"'0.fc'", "ReplaceableChildren"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::nn::convert_to_ternary(*model, bittorch::quant::QuantConfig().threshold_factor(2)); },
      {"convert_to_ternary", "threshold_factor"}));
}

}  // namespace
