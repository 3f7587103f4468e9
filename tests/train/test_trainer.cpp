// bittorch::train::Trainer against a loop written out by hand (schedule, gradient
// accumulation, clipping), resume against an uninterrupted run, and its refusals.

#include <bittorch/bittorch.h>
#include <bittorch/distributed/data_parallel.h>
#include <bittorch/distributed/process_group.h>
#include <bittorch/io/files.h>
#include <bittorch/train.h>
#include <bittorch/train/sharded_adamw.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;
namespace train = bittorch::train;

// A fixed regression problem: 6 batches of 4 rows, 3 features -> 2 targets.
struct Problem {
  torch::Tensor inputs = torch::randn({6, 4, 3}, torch::TensorOptions().dtype(torch::kFloat));
  torch::Tensor targets = torch::randn({6, 4, 2});
  torch::Tensor loss(torch::nn::Linear& model, int64_t batch) const {
    return torch::mse_loss(model->forward(inputs[batch % 6]), targets[batch % 6]);
  }
};

torch::nn::Linear make_model(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Linear(3, 2);
}

// The batch a (micro-)step reads: every micro-batch of the run is another one.
int64_t batch_of(const train::StepContext& c, int64_t accumulation) {
  return c.step * accumulation + c.micro_step;
}

TEST(Trainer, StepsAsTheLoopWrittenOut) {
  torch::manual_seed(0);
  const Problem problem;
  constexpr int64_t kSteps = 7, kPerEpoch = 3, kAccumulation = 2, kWarmup = 2;
  constexpr double kLr = 0.2, kMaxNorm = 0.5;
  const auto schedule =
      train::LrScheduleOptions().warmup_steps(kWarmup).total_steps(kSteps).decay(train::LrDecay::Cosine);

  auto model = make_model(1);
  torch::optim::SGD optimizer(model->parameters(), kLr);
  train::Trainer trainer(*model, optimizer,
                         train::TrainerOptions(kSteps, kPerEpoch)
                             .accumulation_steps(kAccumulation)
                             .max_grad_norm(kMaxNorm)
                             .schedule(schedule)
                             .progress(train::ProgressStyle::None));
  train::TrainerHooks hooks;
  std::vector<int64_t> epochs_seen;
  hooks.step = [&](const train::StepContext& c) {
    if (c.micro_step == 0) epochs_seen.push_back(c.epoch);
    return train::StepOutput{problem.loss(model, batch_of(c, kAccumulation)), 4};
  };
  const auto& history = trainer.fit(hooks);

  // By hand: the mean gradient of the micro-batches, clipped to kMaxNorm, times the rate.
  auto reference = make_model(1);
  std::vector<double> step_losses;
  for (int64_t step = 0; step < kSteps; ++step) {
    for (auto& p : reference->parameters()) p.mutable_grad() = torch::zeros_like(p);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < kAccumulation; ++micro) {
      auto loss = problem.loss(reference, step * kAccumulation + micro);
      loss_sum += loss.item<double>();
      const auto grads = torch::autograd::grad({loss}, reference->parameters());
      for (size_t i = 0; i < grads.size(); ++i) reference->parameters()[i].mutable_grad() += grads[i] / kAccumulation;
    }
    step_losses.push_back(loss_sum / kAccumulation);
    double norm = 0;
    for (auto& p : reference->parameters()) norm += p.grad().square().sum().item<double>();
    norm = std::sqrt(norm);
    const double clip = std::min(1.0, kMaxNorm / (norm + 1e-6));
    const double lr = kLr * (step < kWarmup ? (step + 1.0) / kWarmup
                                            : 0.5 * (1 + std::cos(M_PI * (step - kWarmup) / double(kSteps - kWarmup))));
    torch::NoGradGuard no_grad;
    for (auto& p : reference->parameters()) p -= lr * clip * p.grad();
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::allclose(model->parameters()[i], reference->parameters()[i], 1e-5, 1e-6))
        << model->parameters()[i] << reference->parameters()[i];
  }
  // Three epochs of 3, 3 and 1 steps; each record's loss is the mean of its steps' losses.
  EXPECT_EQ(epochs_seen, (std::vector<int64_t>{1, 1, 1, 2, 2, 2, 3}));
  ASSERT_EQ(history.size(), 3u);
  const std::vector<std::pair<int64_t, int64_t>> spans = {{0, 3}, {3, 6}, {6, 7}};
  for (size_t e = 0; e < 3; ++e) {
    const auto [begin, end] = spans[e];
    double mean = 0;
    for (int64_t s = begin; s < end; ++s) mean += step_losses[s] / double(end - begin);
    EXPECT_EQ(history[e]["epoch"], e + 1);
    EXPECT_EQ(history[e]["steps"], end);
    EXPECT_NEAR(history[e]["train_loss"].get<double>(), mean, 1e-5 * std::abs(mean));
    EXPECT_GT(history[e]["samples_per_second"].get<double>(), 0);
  }
  EXPECT_EQ(trainer.epochs_done(), 3);
  EXPECT_EQ(trainer.steps_done(), kSteps);
}

// load_batch runs for each micro-batch of a step before any of them, with their contexts.
TEST(Trainer, LoadBatchRunsFirstForEachMicroBatch) {
  torch::manual_seed(0);
  const Problem problem;
  auto model = make_model(1);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  train::Trainer trainer(*model, optimizer,
                         train::TrainerOptions(3, 2).accumulation_steps(2).progress(train::ProgressStyle::None));
  std::vector<std::string> calls;
  const auto name = [](const char* what, const train::StepContext& c) {
    return std::string(what) + " " + std::to_string(c.epoch) + "/" + std::to_string(c.step) + "/" +
           std::to_string(c.step_in_epoch) + "/" + std::to_string(c.micro_step);
  };
  train::TrainerHooks hooks;
  hooks.load_batch = [&](const train::StepContext& c) { calls.push_back(name("load", c)); };
  hooks.step = [&](const train::StepContext& c) {
    calls.push_back(name("step", c));
    return train::StepOutput{problem.loss(model, batch_of(c, 2)), 4};
  };
  trainer.fit(hooks);
  EXPECT_EQ(calls, (std::vector<std::string>{"load 1/0/0/0", "load 1/0/0/1", "step 1/0/0/0", "step 1/0/0/1",
                                             "load 1/1/1/0", "load 1/1/1/1", "step 1/1/1/0", "step 1/1/1/1",
                                             "load 2/2/0/0", "load 2/2/0/1", "step 2/2/0/0", "step 2/2/0/1"}));
}

// Trains 3 epochs of 2 steps with Adam and a linear decay, evaluating after each.
struct RegressionRun {
  torch::nn::Linear model;
  torch::optim::Adam optimizer;
  train::Trainer trainer;
  train::TrainerHooks hooks;
  RegressionRun(const Problem& problem, uint64_t seed, const std::string& checkpoint, int64_t stop_after)
      : model(make_model(seed)),
        optimizer(model->parameters(), torch::optim::AdamOptions(0.05)),
        trainer(*model, optimizer,
                train::TrainerOptions(6, 2)
                    .schedule(train::LrScheduleOptions().decay(train::LrDecay::Linear).total_steps(6))
                    .checkpoint_path(checkpoint)
                    .stop_after_epoch(stop_after)
                    .progress(train::ProgressStyle::None)) {
    trainer.set_settings({{"problem", "regression"}});
    hooks.step = [this, &problem](const train::StepContext& c) {
      return train::StepOutput{problem.loss(model, c.step), 4};
    };
    hooks.evaluate = [this, &problem] {
      EXPECT_FALSE(model->is_training());
      EXPECT_FALSE(torch::GradMode::is_enabled());
      return nlohmann::json{{"eval_loss", problem.loss(model, 5).item<double>()}};
    };
  }
};

nlohmann::json without_timing(nlohmann::json history) {
  for (auto& record : history) {
    record.erase("seconds");
    record.erase("samples_per_second");
  }
  return history;
}

TEST(Trainer, ResumeEqualsAnUninterruptedRun) {
  torch::manual_seed(0);
  const Problem problem;
  TempDir dir;
  RegressionRun whole(problem, 1, dir.file("whole.ckpt"), 0);
  whole.trainer.fit(whole.hooks);

  RegressionRun first(problem, 1, dir.file("part.ckpt"), 1);
  first.trainer.fit(first.hooks);
  EXPECT_EQ(first.trainer.epochs_done(), 1);
  RegressionRun rest(problem, 7, dir.file("part.ckpt"), 0);  // other initial weights: the checkpoint's replace them
  const auto stored = rest.trainer.resume(dir.file("part.ckpt"));
  EXPECT_EQ(stored.epochs_done, 1);
  EXPECT_EQ(stored.steps_done, 2);
  rest.trainer.fit(rest.hooks);

  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::equal(whole.model->parameters()[i], rest.model->parameters()[i]));
  EXPECT_EQ(without_timing(whole.trainer.history()), without_timing(rest.trainer.history()));
  EXPECT_EQ(whole.trainer.history().size(), 3u);
  EXPECT_TRUE(whole.trainer.history()[2].contains("eval_loss"));
  // The last checkpoint of both holds the same run.
  RegressionRun again(problem, 9, "", 0);
  again.trainer.resume(dir.file("whole.ckpt"));
  EXPECT_EQ(again.trainer.steps_done(), 6);
  again.trainer.fit(again.hooks);  // nothing left to train
  EXPECT_TRUE(torch::equal(again.model->parameters()[0], whole.model->parameters()[0]));
}

TEST(Trainer, ResumeRefusesOtherSettings) {
  torch::manual_seed(0);
  const Problem problem;
  TempDir dir;
  RegressionRun first(problem, 1, dir.file("part.ckpt"), 1);
  first.trainer.fit(first.hooks);
  // Another length of a linear decay trains another trajectory.
  auto model = make_model(1);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(0.05));
  train::Trainer longer(
      *model, optimizer,
      train::TrainerOptions(8, 2).schedule(train::LrScheduleOptions().decay(train::LrDecay::Linear).total_steps(8)));
  longer.set_settings({{"problem", "regression"}});
  EXPECT_TRUE(throws_error_mentioning([&] { longer.resume(dir.file("part.ckpt")); },
                                      {dir.file("part.ckpt"), "settings.trainer.schedule.total_steps is 6", "8"}));
  EXPECT_EQ(longer.steps_done(), 0);
}

TEST(Trainer, ADivergedRunStopsNamingTheStepAndTheRate) {
  torch::manual_seed(0);
  const Problem problem;
  TempDir dir;
  auto model = make_model(1);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  train::Trainer trainer(*model, optimizer,
                         train::TrainerOptions(10, 5)
                             .loss_check_every(2)
                             .label("ternary")
                             .checkpoint_path(dir.file("run.ckpt"))
                             .divergence_hint("try a lower --lr")
                             .progress(train::ProgressStyle::None));
  train::TrainerHooks hooks;
  hooks.step = [&](const train::StepContext& c) {
    auto loss = problem.loss(model, c.step);
    return train::StepOutput{c.step == 2 ? loss * std::nan("") : loss, 4};
  };
  EXPECT_TRUE(throws_error_mentioning([&] { trainer.fit(hooks); },
                                      {"ternary epoch 1", "by step 4", "diverged", "learning rate 0.1", "--lr"}));
  EXPECT_TRUE(dir.entries().empty());  // no checkpoint of the diverged epoch
}

TEST(Trainer, BadOptionsAndHooksAreRefused) {
  auto model = make_model(1);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto make = [&](const train::TrainerOptions& options) { train::Trainer(*model, optimizer, options); };
  EXPECT_TRUE(throws_error_mentioning([&] { make(train::TrainerOptions(-1, 1)); }, {"total_steps"}));
  EXPECT_TRUE(throws_error_mentioning([&] { make(train::TrainerOptions(10, 0)); }, {"steps_per_epoch"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { make(train::TrainerOptions(10, 2).accumulation_steps(0)); }, {"accumulation"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { make(train::TrainerOptions(10, 2).max_grad_norm(-1)); }, {"max_grad_norm"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { make(train::TrainerOptions(10, 2).schedule(train::LrScheduleOptions().decay(train::LrDecay::Cosine))); },
      {"total_steps"}));
  EXPECT_TRUE(throws_error_mentioning([&] { make(train::TrainerOptions(10, 2).cuda_graph(true)); },
                                      {"cuda_graph", "CUDA device", "cpu"}));
  train::Trainer trainer(*model, optimizer, train::TrainerOptions(2, 1).progress(train::ProgressStyle::None));
  EXPECT_TRUE(throws_error_mentioning([&] { trainer.fit({}); }, {"hooks.step"}));
  train::TrainerHooks hooks;
  hooks.step = [](const train::StepContext&) { return train::StepOutput{torch::ones({2}), 1}; };
  EXPECT_TRUE(throws_error_mentioning([&] { trainer.fit(hooks); }, {"one-element loss"}));
  EXPECT_TRUE(throws_error_mentioning([&] { trainer.set_settings({{"trainer", 1}}); }, {"'trainer'"}));
}

// A TCP port no one listens on now (the kernel's pick for port 0), for a one-process group.
int64_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  if (fd >= 0) close(fd);
  return ok ? ntohs(address.sin_port) : 29500;
}

struct TwoLayers : torch::nn::Module {
  TwoLayers()
      : first(register_module("first", torch::nn::Linear(3, 4))),
        second(register_module("second", torch::nn::Linear(4, 2))) {}
  torch::nn::Linear first, second;
};

// ZeRO stage 2's misuses, on a one-process Gloo group: an optimizer that would skip the
// gradients DataParallel frees, an owner outside the ranks, a parameter left out of the loss.
TEST(Trainer, ShardedGradientsRefuseWhatWouldTrainWrongly) {
  bittorch::distributed::LaunchEnvironment launch;
  launch.master_addr = "127.0.0.1";
  launch.master_port = free_port();
  const auto group = bittorch::distributed::init_process_group(
      launch, torch::kCPU, bittorch::distributed::ProcessGroupOptions().rendezvous_timeout(std::chrono::seconds(20)));
  TwoLayers model;
  const std::vector<torch::optim::OptimizerParamGroup> groups = {torch::optim::OptimizerParamGroup(model.parameters())};
  train::ShardedAdamW sharded(groups, torch::optim::AdamWOptions(0.01), group);
  train::FusedAdamW plain(groups, torch::optim::AdamWOptions(0.01));
  bittorch::distributed::DataParallel parallel(model, group,
                                               bittorch::distributed::DataParallelOptions().gradient_owner(
                                                   [&](const at::Tensor& p) { return sharded.owner(p); }));
  EXPECT_TRUE(parallel.shards_gradients());
  EXPECT_TRUE(throws_error_mentioning(
      [&] { train::Trainer(model, plain, train::TrainerOptions(1, 1).data_parallel(&parallel)); },
      {"shards the gradients", "ShardedAdamW"}));
  EXPECT_NO_THROW(train::Trainer(model, sharded, train::TrainerOptions(1, 1).data_parallel(&parallel)));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::distributed::DataParallel(
            model, group,
            bittorch::distributed::DataParallelOptions().gradient_owner([](const at::Tensor&) { return int64_t{3}; }));
      },
      {"gradient_owner gave rank 3", "1 ranks"}));
  // The second layer takes no part in this loss: its gradients never come.
  const auto loss = model.first->forward(torch::randn({2, 3})).sum();
  EXPECT_TRUE(throws_error_mentioning([&] { parallel.backward(loss); }, {"second.", "received no gradient"}));
  bittorch::distributed::finish_process_group(*group, torch::kCPU);
}

// With ZeRO stage 2 a gradient kept by its owner holds its own memory, also where the backward
// handed it out as rows of a bigger one (q, k and v's joined product), so that the gradients
// of the parameters a rank does not own are freed.
TEST(Trainer, ShardedGradientsOfJoinedProjectionsHoldOnlyTheirRows) {
  bittorch::distributed::LaunchEnvironment launch;
  launch.master_addr = "127.0.0.1";
  launch.master_port = free_port();
  const auto group = bittorch::distributed::init_process_group(
      launch, torch::kCPU, bittorch::distributed::ProcessGroupOptions().rendezvous_timeout(std::chrono::seconds(20)));
  torch::manual_seed(3);
  bittorch::nn::TransformerLM model(
      bittorch::nn::TransformerOptions().vocab_size(11).width(16).heads(2).layers(1).context(8));
  bittorch::nn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), bittorch::nn::is_transformer_projection);
  const std::vector<torch::optim::OptimizerParamGroup> groups = {
      torch::optim::OptimizerParamGroup(model->parameters())};
  train::ShardedAdamW sharded(groups, torch::optim::AdamWOptions(0.01), group);
  bittorch::distributed::DataParallel parallel(*model, group,
                                               bittorch::distributed::DataParallelOptions().gradient_owner(
                                                   [&](const at::Tensor& p) { return sharded.owner(p); }));
  const auto tokens = torch::randint(0, 11, {2, 8});
  parallel.backward(model->loss(tokens, tokens.roll(1, 1)));
  for (const auto& parameter : model->named_parameters()) {
    const auto& grad = parameter.value().grad();
    ASSERT_TRUE(grad.defined()) << parameter.key();
    EXPECT_EQ(grad.storage().nbytes(), grad.nbytes()) << parameter.key();
  }
  bittorch::distributed::finish_process_group(*group, torch::kCPU);
}

TEST(MetricsLog, RewritesTheFileWholeAtEveryReport) {
  TempDir dir;
  const auto path = dir.file("metrics.json");
  train::MetricsLog log(path, {{"dataset", "toy"}});
  log.set_run(0, {{"model", "fp32"}, {"epochs", {1}}});
  EXPECT_EQ(nlohmann::json::parse(bittorch::io::read_regular_file(path)),
            (nlohmann::json{{"dataset", "toy"}, {"runs", {{{"model", "fp32"}, {"epochs", {1}}}}}}));
  log.set_run(1, {{"model", "ternary"}});
  log.set_run(0, {{"model", "fp32"}, {"epochs", {1, 2}}});
  const auto document = nlohmann::json::parse(bittorch::io::read_regular_file(path));
  EXPECT_EQ(document["runs"].size(), 2u);
  EXPECT_EQ(document["runs"][0]["epochs"], (nlohmann::json{1, 2}));
  EXPECT_TRUE(throws_error_mentioning([&] { log.set_run(5, {}); }, {"run 5 of 2"}));
  EXPECT_TRUE(throws_error_mentioning([] { train::MetricsLog("", {{"runs", 1}}); }, {"'runs'"}));
  train::MetricsLog silent("", nlohmann::json::object());
  silent.set_run(0, {{"model", "x"}});
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"metrics.json"});
}

TEST(Device, NamesAreCheckedAndThreadsBounded) {
  EXPECT_EQ(train::parse_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_TRUE(throws_error_mentioning([] { train::parse_device("tpu"); }, {"'tpu'", "cpu, cuda or cuda:N"}));
  EXPECT_TRUE(throws_error_mentioning([] { train::parse_device("cuda:x"); }, {"'cuda:x'"}));
  if (!torch::cuda::is_available()) {
    EXPECT_TRUE(throws_error_mentioning([] { train::parse_device("cuda"); }, {"no CUDA GPU"}));
  }
  EXPECT_TRUE(throws_error_mentioning([] { train::set_threads(train::usable_cpus() + 1); }, {"at most"}));
  EXPECT_TRUE(throws_error_mentioning([] { train::set_threads(-1); }, {">= 0"}));
}

}  // namespace
