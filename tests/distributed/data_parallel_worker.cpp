// One rank of the data-parallel tests (tests/distributed/check_data_parallel.py launches it
// with torchrun, or alone): trains a small model with a TernaryLinear layer for --steps SGD
// steps on a fixed global batch per step, this rank taking its slice, and rank 0 writes the
// final parameters (float64, in registration order) to --output. Modes: bucketed (DataParallel),
// per_parameter (a blocking all-reduce per gradient), bf16 (DataParallel, bfloat16 gradients),
// reference (one process, the whole global batch, no communication). --micro-batches N
// accumulates N micro-batches per step, all but the last without synchronization.
// --optimizer adamw trains with FusedAdamW instead of SGD; --shard optimizer (ZeRO stage 1) or
// gradients (stage 2) with ShardedAdamW, and each rank then says how many gradient elements it
// holds after the last backward.

#include <bittorch/bittorch.h>
#include <bittorch/distributed/data_parallel.h>
#include <bittorch/distributed/process_group.h>
#include <bittorch/train/sharded_adamw.h>

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

namespace {

struct Net : torch::nn::Module {
  Net() {
    hidden =
        register_module("hidden", bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(16, 32).quant(
                                      bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean))));
    out = register_module("out", torch::nn::Linear(32, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) { return out->forward(torch::relu(hidden->forward(x))); }
  bittorch::nn::TernaryLinear hidden{nullptr};
  torch::nn::Linear out{nullptr};
};

std::map<std::string, std::string> parse(int argc, char** argv) {
  std::map<std::string, std::string> args = {{"mode", "bucketed"},  {"steps", "6"},       {"global-batch", "8"},
                                             {"output", ""},        {"bucket-mb", "25"},  {"timeout-ms", "30000"},
                                             {"die-at-step", "-1"}, {"dying-rank", "1"},  {"micro-batches", "1"},
                                             {"device", "cpu"},     {"optimizer", "sgd"}, {"shard", "none"}};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = std::string(argv[i]).substr(2);
    if (!args.count(key)) throw std::invalid_argument("unknown flag " + std::string(argv[i]));
    args[key] = argv[i + 1];
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto args = parse(argc, argv);
    const std::string mode = args.at("mode");
    const int64_t steps = std::stoll(args.at("steps")), global_batch = std::stoll(args.at("global-batch"));
    const auto launch = bittorch::distributed::launch_environment_from_env();
    const bool reference = mode == "reference";
    if (reference != !launch.has_value())
      throw std::invalid_argument("mode reference runs alone, others under torchrun");

    // --device cuda: the rank's GPU (LOCAL_RANK) and NCCL.
    const torch::Device device = args.at("device") == "cuda"
                                     ? torch::Device(torch::kCUDA, launch ? launch->local_rank : 0)
                                     : torch::Device(torch::kCPU);
    torch::manual_seed(3);
    const int64_t micro_batches = std::stoll(args.at("micro-batches"));
    const auto inputs = torch::randn({steps, micro_batches, global_batch, 16}).to(device);
    const auto targets = torch::randn({steps, micro_batches, global_batch, 4}).to(device);
    // Different initial weights per rank: the broadcast from rank 0 must even them out.
    torch::manual_seed(launch ? 10 + launch->rank : 10);
    auto net = std::make_shared<Net>();
    net->to(device);
    const int64_t world = launch ? launch->world_size : 1, rank = launch ? launch->rank : 0;
    if (global_batch % world != 0) throw std::invalid_argument("--global-batch must divide among the ranks");
    const int64_t local = global_batch / world;
    c10::intrusive_ptr<c10d::ProcessGroup> group;
    std::unique_ptr<bittorch::distributed::DataParallel> parallel;
    const std::string shard = args.at("shard");
    if (shard != "none" && (args.at("optimizer") != "adamw" || !launch || mode == "per_parameter"))
      throw std::invalid_argument("--shard needs --optimizer adamw, torchrun and DataParallel");
    if (launch) {
      const auto timeout = std::chrono::milliseconds(std::stoll(args.at("timeout-ms")));
      group = bittorch::distributed::init_process_group(
          *launch, device, bittorch::distributed::ProcessGroupOptions().timeout(timeout).rendezvous_timeout(timeout));
    }
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    bittorch::train::ShardedAdamW* sharded = nullptr;
    const auto adamw = torch::optim::AdamWOptions(0.01);
    if (shard != "none") {
      optimizer = std::make_unique<bittorch::train::ShardedAdamW>(
          std::vector{torch::optim::OptimizerParamGroup(net->parameters())}, adamw, group);
      sharded = static_cast<bittorch::train::ShardedAdamW*>(optimizer.get());
    } else if (args.at("optimizer") == "adamw") {
      optimizer = std::make_unique<bittorch::train::FusedAdamW>(
          std::vector{torch::optim::OptimizerParamGroup(net->parameters())}, adamw);
    } else {
      optimizer = std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    }
    if (launch) {
      if (mode != "per_parameter") {
        auto options = bittorch::distributed::DataParallelOptions()
                           .bucket_cap_mb(std::stod(args.at("bucket-mb")))
                           .bf16_gradients(mode == "bf16");
        if (shard == "gradients") {
          options.gradient_owner([sharded](const at::Tensor& parameter) { return sharded->owner(parameter); });
        }
        parallel = std::make_unique<bittorch::distributed::DataParallel>(*net, group, options);
      } else {
        for (auto& p : net->parameters()) {
          std::vector<at::Tensor> one = {p.detach()};
          group->broadcast(one)->wait();
        }
      }
    }
    for (int64_t step = 0; step < steps; ++step) {
      if (std::stoll(args.at("die-at-step")) == step && rank == std::stoll(args.at("dying-rank")))
        std::_Exit(9);  // a rank that dies
      optimizer->zero_grad();
      for (int64_t micro = 0; micro < micro_batches; ++micro) {
        const auto x = inputs[step][micro].narrow(0, rank * local, local);
        const auto y = targets[step][micro].narrow(0, rank * local, local);
        const auto loss = torch::mse_loss(net->forward(x), y) / static_cast<double>(micro_batches);
        if (parallel) {
          parallel->backward(loss, /*sync=*/micro == micro_batches - 1);
        } else {
          loss.backward();
        }
      }
      if (mode == "per_parameter") bittorch::distributed::average_gradients_per_parameter(*net, *group);
      optimizer->step();
    }
    if (shard != "none") {
      int64_t held = 0, all = 0;
      for (const auto& p : net->parameters()) {
        all += p.numel();
        if (p.grad().defined()) held += p.numel();
      }
      std::cout << "rank " << rank << " holds " << held << " of " << all << " gradient elements" << std::endl;
    }
    if (group) {
      // Whether the ranks ended with the same parameters (they must): rank 0's broadcast and
      // compared everywhere, the largest difference printed by rank 0.
      std::vector<at::Tensor> mine = {torch::cat([&] {
        std::vector<at::Tensor> parts;
        for (const auto& p : net->parameters()) parts.push_back(p.detach().flatten());
        return parts;
      }())};
      std::vector<at::Tensor> rank0 = {mine[0].clone()};
      group->broadcast(rank0)->wait();
      std::vector<at::Tensor> difference = {(mine[0] - rank0[0]).abs().max().reshape({1})};
      c10d::AllreduceOptions maximum;
      maximum.reduceOp = c10d::ReduceOp::MAX;
      group->allreduce(difference, maximum)->wait();
      if (rank == 0) std::cout << "ranks differ by " << difference[0].item<double>() << std::endl;
      bittorch::distributed::finish_process_group(*group, device);
    }
    if (rank == 0 && !args.at("output").empty()) {
      std::ofstream out(args.at("output"));
      out.precision(17);
      for (const auto& p : net->parameters()) {
        const auto values = p.detach().to(torch::kCPU, torch::kDouble).flatten().contiguous();
        for (int64_t i = 0; i < values.numel(); ++i) out << values.data_ptr<double>()[i] << "\n";
      }
      if (!out) throw std::runtime_error("cannot write " + args.at("output"));
    }
    return 0;
  } catch (const c10::Error& error) {
    std::cerr << "data_parallel_worker: " << error.what_without_backtrace() << std::endl;
  } catch (const std::exception& error) {
    std::cerr << "data_parallel_worker: " << error.what() << std::endl;
  }
  return 1;
}
