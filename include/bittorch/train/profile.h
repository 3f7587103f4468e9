#pragma once

// Where a piece of work spends its time, from LibTorch's Kineto profiler (the engine under
// torch.profiler): every CUDA kernel and copy attributed to the outermost op that launched it
// (an aten:: or bittorch:: op of the forward, an autograd node of the backward, the optimizer's
// kernel), and each op's time on the host, with a Chrome trace (chrome://tracing, Perfetto)
// for the detail.
//
//   auto summary = bittorch::train::profile_ops([&] { trainer.fit(hooks); }, device, "step.trace.json");

#include <bittorch/train/export.h>

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bittorch::train {

/// One outermost op (by name) over the profiled work.
struct ProfiledOp {
  std::string name;
  int64_t calls = 0;
  double host_ms = 0;    ///< its host time, children included
  double device_ms = 0;  ///< the kernels and copies it launched, on the GPU (0 on the CPU)
  int64_t kernels = 0;   ///< how many
};

struct ProfileSummary {
  double wall_ms = 0;           ///< the work, from start to end (the GPU synchronized)
  double device_busy_ms = 0;    ///< the sum of all kernels' and copies' times
  std::vector<ProfiledOp> ops;  ///< by device time, then host time, largest first
};

/// Runs `run` once under the profiler, recording CPU ops and, when `device` is CUDA, its
/// kernels; writes the Chrome trace to `trace_path` unless it is empty.
BITTORCH_TRAIN_API ProfileSummary profile_ops(const std::function<void()>& run, c10::Device device,
                                              const std::string& trace_path = "");

}  // namespace bittorch::train
