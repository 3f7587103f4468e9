#include <bittorch/train/profile.h>

#include <bittorch/train/device.h>

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <unordered_map>

namespace bittorch::train {
namespace {

namespace profiler = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;

// Each host event's outermost enclosing host event on its thread (itself if none), from the
// events' time ranges: an op's children start and end within it.
std::vector<size_t> outermost_of(const std::vector<profiler::KinetoEvent>& events,
                                 const std::vector<size_t>& host_events) {
  std::vector<size_t> outermost(events.size());
  std::map<uint64_t, std::vector<size_t>> by_thread;
  for (const auto i : host_events) by_thread[events[i].startThreadId()].push_back(i);
  for (auto& [thread, indices] : by_thread) {
    std::sort(indices.begin(), indices.end(), [&](size_t a, size_t b) {
      return events[a].startNs() != events[b].startNs() ? events[a].startNs() < events[b].startNs()
                                                        : events[a].endNs() > events[b].endNs();
    });
    size_t top = indices.front();
    for (const auto i : indices) {
      if (events[i].startNs() >= events[top].endNs()) top = i;  // a new outermost op
      outermost[i] = top;
    }
  }
  return outermost;
}

}  // namespace

ProfileSummary profile_ops(const std::function<void()>& run, c10::Device device, const std::string& trace_path) {
  std::set<ActivityType> activities = {ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  profiler::prepareProfiler(config, activities);
  profiler::enableProfiler(config, activities);
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  try {
    run();
    synchronize(device);
  } catch (...) {
    profiler::disableProfiler();
    throw;
  }
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  auto result = profiler::disableProfiler();
  if (!trace_path.empty()) result->save(trace_path);

  const auto& events = result->events();
  // A kernel's linked correlation id is that of the op that launched it (as torch.profiler
  // reads it); the CUDA runtime's own events (cudaLaunchKernel, no "::" in their names) number
  // theirs apart, and are looked up only where no op has the id.
  std::vector<size_t> host_events;
  std::unordered_map<uint64_t, size_t> ops_by_correlation, runtime_by_correlation;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].deviceType() != c10::DeviceType::CPU) continue;
    host_events.push_back(i);
    if (events[i].correlationId() == 0) continue;
    const bool op = events[i].name().find("::") != std::string::npos;
    (op ? ops_by_correlation : runtime_by_correlation)[events[i].correlationId()] = i;
  }
  const auto launcher_of = [&](uint64_t id) -> std::optional<size_t> {
    for (const auto* map : {&ops_by_correlation, &runtime_by_correlation}) {
      const auto found = map->find(id);
      if (found != map->end()) return found->second;
    }
    return std::nullopt;
  };
  ProfileSummary summary;
  summary.wall_ms = wall_ms;
  if (host_events.empty()) return summary;
  const auto outermost = outermost_of(events, host_events);
  std::map<std::string, ProfiledOp> ops;
  for (const auto i : host_events) {
    if (outermost[i] != i) continue;
    auto& op = ops[events[i].name()];
    op.calls += 1;
    op.host_ms += static_cast<double>(events[i].durationNs()) / 1e6;
  }
  for (const auto& event : events) {
    if (event.deviceType() == c10::DeviceType::CPU) continue;
    const double ms = static_cast<double>(event.durationNs()) / 1e6;
    summary.device_busy_ms += ms;
    const auto launcher = launcher_of(event.linkedCorrelationId());
    auto& op = ops[launcher ? events[outermost[*launcher]].name() : "(launched outside any op)"];
    op.device_ms += ms;
    op.kernels += 1;
  }
  for (auto& [name, op] : ops) {
    op.name = name;
    summary.ops.push_back(op);
  }
  std::sort(summary.ops.begin(), summary.ops.end(), [](const ProfiledOp& a, const ProfiledOp& b) {
    return a.device_ms != b.device_ms ? a.device_ms > b.device_ms : a.host_ms > b.host_ms;
  });
  return summary;
}

}  // namespace bittorch::train
