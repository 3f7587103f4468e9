#include <bittorch/distributed/process_group.h>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef BITTORCH_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef BITTORCH_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <limits>

namespace bittorch::distributed {
namespace {

std::optional<std::string> variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

int64_t integer_variable(const char* name, int64_t minimum, int64_t maximum) {
  const auto text = variable(name);
  TORCH_CHECK(text.has_value(), "distributed launch: WORLD_SIZE is set but ", name, " is not");
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TORCH_CHECK(used == text->size() && !text->empty() && value >= minimum && value <= maximum,
              "distributed launch: ", name, "='", *text, "' is not an integer in [", minimum, ", ", maximum, "]");
  return value;
}

}  // namespace

std::optional<LaunchEnvironment> launch_environment_from_env() {
  if (!variable("WORLD_SIZE").has_value()) return std::nullopt;
  LaunchEnvironment launch;
  launch.world_size = integer_variable("WORLD_SIZE", 1, 1 << 20);
  launch.rank = integer_variable("RANK", 0, launch.world_size - 1);
  launch.local_rank =
      variable("LOCAL_RANK").has_value() ? integer_variable("LOCAL_RANK", 0, launch.world_size - 1) : launch.rank;
  const auto address = variable("MASTER_ADDR");
  TORCH_CHECK(address.has_value() && !address->empty(), "distributed launch: WORLD_SIZE is set but MASTER_ADDR is not");
  launch.master_addr = *address;
  launch.master_port = integer_variable("MASTER_PORT", 1, std::numeric_limits<uint16_t>::max());
  launch.agent_store = variable("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  if (launch.agent_store && variable("TORCHELASTIC_RESTART_COUNT").has_value()) {
    launch.restart_count = integer_variable("TORCHELASTIC_RESTART_COUNT", 0, std::numeric_limits<int32_t>::max());
  }
  return launch;
}

bool backend_available(c10::Device device) {
#ifdef BITTORCH_C10D_NCCL
  if (device.is_cuda()) return true;
#endif
#ifdef BITTORCH_C10D_GLOO
  if (device.is_cpu()) return true;
#endif
  static_cast<void>(device);
  return false;
}

c10::intrusive_ptr<c10d::ProcessGroup> init_process_group(const LaunchEnvironment& launch, c10::Device device,
                                                          const ProcessGroupOptions& options) {
  TORCH_CHECK(device.is_cpu() || device.is_cuda(), "init_process_group: a CPU or CUDA device, not ", device);
  TORCH_CHECK(backend_available(device), "init_process_group: this build of BitTorch has no ",
              device.is_cuda() ? "NCCL" : "Gloo", " backend for ", device,
              device.is_cuda() ? " (a CUDA build finds nccl.h in torch's nvidia-nccl package)"
                               : " (it needs the Gloo headers at build time: Debian's libgloo-dev)");
  const int rank = static_cast<int>(launch.rank), size = static_cast<int>(launch.world_size);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(launch.master_port);
    store_options.isServer = launch.rank == 0 && !launch.agent_store;
    store_options.numWorkers = launch.agent_store ? std::nullopt : std::optional<size_t>(size);
    store_options.waitWorkers = !launch.agent_store;
    store_options.timeout = options.timeout();
    store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, store_options);
    if (launch.agent_store) {
      store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(launch.restart_count), store);
    }
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rendezvous of rank ", rank, " of ", size, " at ", launch.master_addr, ":", launch.master_port,
                " did not complete within ", options.timeout().count(), " ms: ", error.what());
  }
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
#ifdef BITTORCH_C10D_NCCL
  if (device.is_cuda()) {
    // One GPU per process: kernels that use the current device (and NCCL's communicator)
    // must not land on GPU 0.
    c10::cuda::set_device(device.has_index() ? device.index() : 0);
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout();
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_options);
    group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, backend);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
  }
#endif
#ifdef BITTORCH_C10D_GLOO
  if (device.is_cpu()) {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout());
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_options);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  }
#endif
  return group;
}

void finish_process_group(c10d::ProcessGroup& group, c10::Device device) {
  c10d::BarrierOptions options;
  if (device.is_cuda()) options.device_ids = {device.has_index() ? device.index() : 0};
  group.barrier(options)->wait();  // NCCL's barrier blocks the host until it completes
  group.shutdown();
}

}  // namespace bittorch::distributed
