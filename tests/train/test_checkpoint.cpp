// bittorch::train checkpoints of any module tree: round trips, model descriptions, and
// refusals that name the field before a tensor is loaded.

#include <bittorch/bittorch.h>
#include <bittorch/train/checkpoint.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;
namespace train = bittorch::train;

// A block of a model of one's own: a full-precision embedding, a ternary projection, a
// parameter and a buffer of its own.
struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(int64_t width)
      : embedding(register_module("embedding", torch::nn::Embedding(16, width))),
        projection(register_module(
            "projection", bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(width, width).bias(false)))),
        gain(register_parameter("gain", torch::ones({width}))),
        count(register_buffer("count", torch::zeros({1}))) {}
  torch::Tensor forward(const torch::Tensor& tokens) { return projection(embedding(tokens)) * gain; }
  torch::nn::Embedding embedding;
  bittorch::nn::TernaryLinear projection;
  torch::Tensor gain, count;
};
TORCH_MODULE(Block);

torch::nn::Sequential make_model(int64_t width) {
  return torch::nn::Sequential(Block(width), torch::nn::ReLU(), torch::nn::Linear(width, 3));
}

TEST(Checkpoint, DescribesEveryLayerOfATreeByPath) {
  const auto layers = train::describe_layers(*make_model(8));
  std::vector<std::string> names, types;
  for (const auto& layer : layers) {
    names.push_back(layer["name"]);
    types.push_back(layer["type"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"0", "0.embedding", "0.projection", "1", "2"}));
  EXPECT_EQ(types, (std::vector<std::string>{"Block", "Embedding", "TernaryLinear", "ReLU", "Linear"}));
  EXPECT_EQ(layers[0]["shapes"], (nlohmann::json{{"gain", {8}}, {"count", {1}}}));
  EXPECT_EQ(layers[1]["shapes"], (nlohmann::json{{"weight", {16, 8}}}));
  EXPECT_EQ(layers[2]["scale_mode"], "max");
  EXPECT_EQ(layers[2]["bias"], false);
  EXPECT_EQ(layers[4]["out_features"], 3);
  EXPECT_FALSE(layers[3].contains("shapes"));
}

TEST(Checkpoint, RoundTripsModelOptimizerAndMetadata) {
  TempDir dir;
  const auto path = dir.file("run.ckpt");
  torch::manual_seed(0);
  auto model = make_model(8);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  const auto tokens = torch::randint(16, {5}, torch::kLong);
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    model->forward(tokens).square().mean().backward();
    optimizer.step();
  }
  train::CheckpointMetadata metadata{
      train::describe_model(*model, "ternary"), {{"lr", 0.01}}, 1, 2, nlohmann::json::array({{{"epoch", 1}}})};
  train::save_checkpoint(path, *model, &optimizer, metadata);

  torch::manual_seed(1);  // other initial weights
  auto loaded = make_model(8);
  torch::optim::Adam loaded_optimizer(loaded->parameters(), torch::optim::AdamOptions(1e-2));
  const nlohmann::json settings = {{"lr", 0.01}};
  const auto stored = train::load_checkpoint(path, *loaded, &loaded_optimizer,
                                             train::describe_model(*loaded, "ternary"), torch::kCPU, &settings);
  EXPECT_EQ(stored.epochs_done, 1);
  EXPECT_EQ(stored.steps_done, 2);
  EXPECT_EQ(stored.metrics, metadata.metrics);
  const auto original = model->named_parameters();
  for (const auto& p : loaded->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), original[p.key()])) << p.key();
  // The optimizer's state came along: one more step from both gives the same weights.
  optimizer.zero_grad();
  loaded_optimizer.zero_grad();
  model->forward(tokens).square().mean().backward();
  loaded->forward(tokens).square().mean().backward();
  optimizer.step();
  loaded_optimizer.step();
  for (const auto& p : loaded->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), original[p.key()])) << p.key();
}

TEST(Checkpoint, MismatchesAreRefusedBeforeTheTensorsLoad) {
  TempDir dir;
  const auto path = dir.file("run.ckpt");
  auto model = make_model(8);
  train::save_checkpoint(path, *model, nullptr, {train::describe_model(*model, "ternary"), {{"batch_size", 64}}});

  auto wider = make_model(12);
  const auto before = wider->parameters()[0].clone();
  EXPECT_TRUE(throws_error_mentioning(
      [&] { train::load_checkpoint(path, *wider, nullptr, train::describe_model(*wider, "ternary"), torch::kCPU); },
      {path, "model.layers[0].shapes.gain[0] is 8", "12"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { train::load_checkpoint(path, *model, nullptr, train::describe_model(*model, "fp32"), torch::kCPU); },
      {"field model.kind", "\"ternary\"", "\"fp32\""}));
  auto same = make_model(8);
  const auto same_before = same->parameters()[0].clone();
  const nlohmann::json other_settings = {{"batch_size", 32}};
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        train::load_checkpoint(path, *same, nullptr, train::describe_model(*same, "ternary"), torch::kCPU,
                               &other_settings);
      },
      {"field settings.batch_size is 64", "32"}));
  EXPECT_TRUE(torch::equal(same->parameters()[0], same_before));
  EXPECT_TRUE(torch::equal(wider->parameters()[0], before));
  // An optimizer asked for but not stored.
  torch::optim::SGD optimizer(same->parameters(), 0.1);
  EXPECT_TRUE(throws_error_mentioning(
      [&] { train::load_checkpoint(path, *same, &optimizer, train::describe_model(*same, "ternary"), torch::kCPU); },
      {"no optimizer state"}));
  // A flipped byte: the checksum.
  auto bytes = bittorch::io::read_regular_file(path);
  bytes[bytes.size() / 2] ^= 0x20;
  bittorch::io::write_file_atomically(path, bytes);
  EXPECT_TRUE(throws_error_mentioning(
      [&] { train::load_checkpoint(path, *model, nullptr, train::describe_model(*model, "ternary"), torch::kCPU); },
      {path, "corrupted"}));
}

// Another architecture is named field by field, one short line each (a differing list by its
// lengths and entries, long values cut), not by the whole stored description.
TEST(Checkpoint, AnotherArchitectureIsSaidFieldByField) {
  TempDir dir;
  const auto path = dir.file("deep.ckpt");
  torch::nn::Sequential deep;
  for (int i = 0; i < 40; ++i) deep->push_back(torch::nn::Linear(8, 8));
  train::save_checkpoint(path, *deep, nullptr, {train::describe_model(*deep, "fp32"), nlohmann::json::object()});
  auto shallow = make_model(8);
  try {
    train::load_checkpoint(path, *shallow, nullptr, train::describe_model(*shallow, "fp32"), torch::kCPU);
    FAIL() << "another architecture loaded";
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    EXPECT_NE(message.find("field model.layers has 40 entries in the checkpoint, but 5 in this run"), std::string::npos)
        << message;
    EXPECT_NE(message.find("more"), std::string::npos) << message;  // beyond the first 12 differences
    EXPECT_LT(message.size(), 2000U) << message;
  }
}

}  // namespace
