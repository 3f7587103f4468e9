// bittorch-xor: a 2-4-1 MLP learns XOR from noisy points around the corners of the unit
// square, with TernaryLinear layers, or side by side with torch::nn::Linear (--compare).

#include "common/cli.h"
#include "common/models.h"

#include <bittorch/train.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

namespace {

using namespace bittorch::apps;

constexpr int64_t kPointsPerCorner = 250;
constexpr double kNoise = 0.1;

struct XorData {
  torch::Tensor points, labels;  // [1000, 2], [1000, 1] in {0, 1}
};

XorData make_xor_data(uint64_t seed, torch::Device device) {
  torch::manual_seed(seed);
  const auto corners = torch::tensor({{-1.0f, -1.0f}, {-1.0f, 1.0f}, {1.0f, -1.0f}, {1.0f, 1.0f}});
  const auto corner_labels = torch::tensor({0.0f, 1.0f, 1.0f, 0.0f});
  const auto corner_of_point = torch::arange(4).repeat_interleave(kPointsPerCorner);
  const auto points = corners.index_select(0, corner_of_point) + kNoise * torch::randn({4 * kPointsPerCorner, 2});
  const auto labels = corner_labels.index_select(0, corner_of_point).unsqueeze(1);
  return {points.to(device), labels.to(device)};
}

constexpr int64_t kStepsPerReport = 500;

struct XorResult {
  std::string model;
  double loss = 0, accuracy = 0;
};

XorResult train(const std::string& kind, const XorData& data, int64_t steps, double lr, uint64_t seed,
                const bittorch::quant::QuantConfig& recipe, torch::Device device) {
  torch::manual_seed(seed);
  auto model = make_mlp({2, 4, 1}, kind == "ternary" ? std::optional(recipe) : std::nullopt);
  model->to(device);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(lr));
  // Full-batch steps; an "epoch" is the interval between reports.
  bittorch::train::Trainer trainer(*model, optimizer,
                                   bittorch::train::TrainerOptions(steps, std::min(steps, kStepsPerReport))
                                       .label(kind)
                                       .unit("points")
                                       .progress(bittorch::train::ProgressStyle::None)
                                       .divergence_hint("try a lower --lr")
                                       .device(device));
  bittorch::train::TrainerHooks hooks;
  hooks.step = [&](const bittorch::train::StepContext&) {
    const auto loss = torch::binary_cross_entropy_with_logits(model->forward(data.points), data.labels);
    return bittorch::train::StepOutput{loss, data.points.size(0)};
  };
  hooks.evaluate = [&] {
    const auto logits = model->forward(data.points);
    const auto correct = (logits > 0).to(torch::kFloat).eq(data.labels);
    return nlohmann::json{{"loss", torch::binary_cross_entropy_with_logits(logits, data.labels).item<double>()},
                          {"accuracy", 100.0 * correct.to(torch::kDouble).mean().item<double>()}};
  };
  const auto& last = trainer.fit(hooks).back();
  return {kind, last.at("loss").get<double>(), last.at("accuracy").get<double>()};
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-xor", "Learn XOR with a 2-4-1 MLP of ternary (or FP32) layers");
  // clang-format off
  options.add_options()
    ("steps", "Full-batch training steps", text_flag("2000"))
    ("lr", "Adam learning rate", text_flag("0.01"))
    ("seed", "Random seed (data and initial weights)", text_flag("0"))
    ("compare", "Train an FP32 torch::nn::Linear model and a ternary one on the same data");
  // clang-format on
  add_ternary_recipe_options(options, "max", 0.05);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    const auto steps = integer_flag(args, "steps", 1);
    const auto lr = positive_flag(args, "lr");
    const auto seed = static_cast<uint64_t>(integer_flag(args, "seed", 0));
    const auto recipe = parse_ternary_recipe(args);
    const auto device = selected_device(args);
    const auto data = make_xor_data(seed, device);
    std::vector<std::string> kinds;
    if (args.count("compare")) kinds.push_back("fp32");
    kinds.push_back("ternary");
    std::vector<XorResult> results;
    for (const auto& kind : kinds) results.push_back(train(kind, data, steps, lr, seed, recipe, device));
    std::cout << fmt::format("\n{:<8}  {:>10}  {:>9}\n", "model", "final loss", "accuracy");
    for (const auto& r : results) {
      std::cout << fmt::format("{:<8}  {:>10.4f}  {:>8.1f}%\n", r.model, r.loss, r.accuracy);
    }
    return 0;
  });
}
