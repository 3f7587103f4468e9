#include <bittorch/train/device.h>

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>

namespace bittorch::train {

c10::Device parse_device(std::string_view name) {
  const std::string text(name);
  std::optional<c10::Device> device;
  if (text == "cpu" || text.rfind("cuda", 0) == 0) {
    try {
      device.emplace(text);
    } catch (const c10::Error&) {
    }
  }
  TORCH_CHECK(device, "device '", text, "': expected cpu, cuda or cuda:N");
  if (device->is_cuda()) {
    TORCH_CHECK(torch::cuda::is_available(), "device '", text, "': no CUDA GPU is available");
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    TORCH_CHECK(!device->has_index() || device->index() < count, "device '", text, "': this machine has ", count,
                " CUDA device(s)");
  }
  return *device;
}

int64_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return std::max<int64_t>(1, ::sysconf(_SC_NPROCESSORS_ONLN));
}

void set_threads(int64_t threads) {
  TORCH_CHECK(threads >= 0, "threads must be >= 0, not ", threads);
  if (threads == 0) return;
  const int64_t cpus = usable_cpus();
  // 5,000 threads on 2 cores never finish an epoch.
  TORCH_CHECK(threads <= cpus, "threads must be at most ", cpus, " (the CPUs this process may use), not ", threads);
  at::set_num_threads(static_cast<int>(threads));
}

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace bittorch::train
