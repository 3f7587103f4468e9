#include "common/launch.h"

#include "common/cli.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace bittorch::apps {

void add_launch_options(cxxopts::Options& options) {
  options.add_options()("rendezvous-timeout",
                        "Under torchrun: seconds the rendezvous may take (default: BITTORCH_RENDEZVOUS_TIMEOUT, "
                        "else 60)",
                        cxxopts::value<std::string>());
}

ProcessRanks join_launch(torch::Device& device, const cxxopts::ParseResult& args) {
  std::chrono::milliseconds timeout = distributed::ProcessGroupOptions().rendezvous_timeout();
  const auto launch = distributed::launch_environment_from_env();
  if (!launch) return {};
  if (args.count("rendezvous-timeout")) {
    const double seconds = positive_flag(args, "rendezvous-timeout");
    timeout = std::chrono::milliseconds(static_cast<int64_t>(std::min(seconds, 1e9) * 1000));
  } else {
    try {
      timeout = distributed::rendezvous_timeout_from_env(timeout);
    } catch (const c10::Error& error) {
      throw UsageError(error.what_without_backtrace());
    }
  }
  if (device.is_cuda()) device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch->local_rank));
  ProcessRanks ranks{
      distributed::init_process_group(*launch, device, distributed::ProcessGroupOptions().rendezvous_timeout(timeout)),
      launch->rank, launch->world_size, device};
  if (!ranks.leader()) spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
  spdlog::info("data parallel: {} processes ({}), this is rank {}", ranks.count, device.is_cuda() ? "NCCL" : "Gloo",
               ranks.rank);
  return ranks;
}

void ProcessRanks::finish() const {
  if (group) distributed::finish_process_group(*group, device);
}

}  // namespace bittorch::apps
