#include "common/launch.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace bittorch::apps {

ProcessRanks join_launch(torch::Device& device) {
  const auto launch = distributed::launch_environment_from_env();
  if (!launch) return {};
  if (device.is_cuda()) device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch->local_rank));
  ProcessRanks ranks{distributed::init_process_group(*launch, device), launch->rank, launch->world_size, device};
  if (!ranks.leader()) spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
  spdlog::info("data parallel: {} processes ({}), this is rank {}", ranks.count, device.is_cuda() ? "NCCL" : "Gloo",
               ranks.rank);
  return ranks;
}

void ProcessRanks::finish() const {
  if (group) distributed::finish_process_group(*group, device);
}

}  // namespace bittorch::apps
