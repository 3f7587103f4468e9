#include <bittorch/distributed/process_group.h>

#include "distributed/heartbeat.h"

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

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <functional>
#include <future>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

namespace bittorch::distributed {

using detail::describe_ranks;
using detail::message_of;

namespace {

std::optional<std::string> variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// `text` read whole as a T (an int64_t or a double), or nullopt.
template <typename T>
std::optional<T> whole_number(const std::string& text) {
  size_t used = 0;
  try {
    const T value =
        std::is_integral_v<T> ? static_cast<T>(std::stoll(text, &used)) : static_cast<T>(std::stod(text, &used));
    if (used == text.size() && !text.empty()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

int64_t integer_variable(const char* name, int64_t minimum, int64_t maximum) {
  const auto text = variable(name);
  TORCH_CHECK(text.has_value(), "distributed launch: WORLD_SIZE is set but ", name, " is not");
  const auto value = whole_number<int64_t>(*text);
  TORCH_CHECK(value.has_value() && *value >= minimum && *value <= maximum, "distributed launch: ", name, "='", *text,
              "' is not an integer in [", minimum, ", ", maximum, "]");
  return *value;
}

// How often a rendezvous that waits says so.
constexpr std::chrono::seconds kRendezvousReport{5};

// Each rank checks in under its own key with its WORLD_SIZE, then waits for every rank of
// `size`, calling report(missing ranks, timed out) every few seconds while some are missing and
// once more at the timeout (which must throw); then every rank's WORLD_SIZE must be `size`.
void roll_call(c10d::Store& store, int rank, int size, std::chrono::milliseconds timeout,
               const std::function<void(const std::string&, bool)>& report) {
  const auto key = [](int r) { return "bittorch/rendezvous/rank_" + std::to_string(r); };
  const auto text = std::to_string(size);
  store.set(key(rank), std::vector<uint8_t>(text.begin(), text.end()));
  const auto started = std::chrono::steady_clock::now();
  auto last_report = started;
  for (;;) {
    std::vector<int> missing;
    for (int r = 0; r < size; ++r) {
      if (!store.check({key(r)})) missing.push_back(r);
    }
    if (missing.empty()) break;
    const auto now = std::chrono::steady_clock::now();
    if (now - started > timeout) {
      report(std::to_string(size - static_cast<int>(missing.size())) + " of " + std::to_string(size) +
                 " ranks came; missing " + describe_ranks(missing),
             true);
    }
    if (now - last_report > kRendezvousReport) {
      report(describe_ranks(missing), false);
      last_report = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int r = 0; r < size; ++r) {
    const auto value = store.get(key(r));
    const std::string other(value.begin(), value.end());
    TORCH_CHECK(other == text, "rendezvous: rank ", r, " has WORLD_SIZE ", other, ", rank ", rank, " has ", size,
                ": every rank of a launch must be started with the same WORLD_SIZE");
  }
}

}  // namespace

std::chrono::milliseconds rendezvous_timeout_from_env(std::chrono::milliseconds fallback) {
  const auto text = variable("BITTORCH_RENDEZVOUS_TIMEOUT");
  if (!text.has_value()) return fallback;
  const auto seconds = whole_number<double>(*text);
  TORCH_CHECK(seconds.has_value() && *seconds > 0 && *seconds < 1e9, "BITTORCH_RENDEZVOUS_TIMEOUT='", *text,
              "' is not a number of seconds > 0");
  return std::chrono::milliseconds(static_cast<int64_t>(*seconds * 1000));
}

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
  const auto where = launch.master_addr + ":" + std::to_string(launch.master_port);
  const auto timeout = options.rendezvous_timeout();
  const auto started = std::chrono::steady_clock::now();
  const auto waited = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  const auto fail = [&](const std::string& why) {
    TORCH_CHECK(false, "rendezvous of rank ", rank, " of ", size, " at ", where, " did not complete within ",
                timeout.count() / 1000.0, " s: ", why,
                " (check MASTER_ADDR, MASTER_PORT and WORLD_SIZE, and that every rank was started; "
                "BITTORCH_RENDEZVOUS_TIMEOUT or --rendezvous-timeout gives it longer)");
  };
  // The store, made in a thread of its own so that this one can say what it waits for.
  auto made = std::async(std::launch::async, [&]() -> c10::intrusive_ptr<c10d::Store> {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(launch.master_port);
    store_options.isServer = launch.rank == 0 && !launch.agent_store;
    store_options.numWorkers = launch.agent_store ? std::nullopt : std::optional<size_t>(size);
    store_options.waitWorkers = false;  // the roll call below waits for the ranks, saying which
    store_options.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, store_options);
    if (!launch.agent_store) return tcp;
    return c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(launch.restart_count), tcp);
  });
  while (made.wait_for(kRendezvousReport) != std::future_status::ready) {
    spdlog::warn("rank {} of {}: waiting {:.0f} s to reach the rendezvous store at {}", rank, size, waited(), where);
  }
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = made.get();
  } catch (const std::exception& error) {
    fail("the store was not reached (" + message_of(error) + ")");
  }
  // The roll call: each rank checks in with its WORLD_SIZE; all must come and agree.
  try {
    roll_call(*store, rank, size, timeout, [&](const std::string& waiting_for, bool timed_out) {
      if (timed_out) fail(waiting_for);
      spdlog::warn("rank {} of {}: waiting {:.0f} s at {} for {}", rank, size, waited(), where, waiting_for);
    });
  } catch (const c10::DistStoreError& error) {
    fail("the store stopped answering (" + message_of(error) + "): a rank ended");
  }
  store->setTimeout(options.timeout());  // the backends' own waits from here on
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
  detail::start_heartbeat(*group, launch.agent_store ? "the torchrun agent" : "rank 0");
  return group;
}

void finish_process_group(c10d::ProcessGroup& group, c10::Device device) {
  c10d::BarrierOptions options;
  if (device.is_cuda()) options.device_ids = {device.has_index() ? device.index() : 0};
  // The heartbeat stops first: once the barrier completes, rank 0 may exit and take the store
  // with it while another rank's heartbeat still beats. NCCL's barrier blocks the host until
  // it completes.
  detail::stop_heartbeat(group);
  detail::naming_stopped_ranks(group, [&] { group.barrier(options)->wait(); });
  detail::forget_heartbeat(group);
  group.shutdown();
}

}  // namespace bittorch::distributed
