#pragma once

// Where a run computes: the device from its name and the number of CPU threads.

#include <bittorch/train/export.h>

#include <c10/core/Device.h>

#include <cstdint>
#include <string_view>

namespace bittorch::train {

/// "cpu", "cuda" or "cuda:N" as a device of this machine. A c10::Error names the text when it
/// is no such name, when no CUDA GPU is available, or when device N does not exist.
BITTORCH_TRAIN_API c10::Device parse_device(std::string_view name);

/// The CPUs this process may run on (its affinity mask, which containers and taskset narrow).
BITTORCH_TRAIN_API int64_t usable_cpus();

/// Sets LibTorch's intra-op thread count; 0 keeps LibTorch's default (one per core). More
/// threads than usable_cpus() only spin against each other: a c10::Error.
BITTORCH_TRAIN_API void set_threads(int64_t threads);

/// Waits for the work queued on `device` (nothing to wait for on the CPU): timings and
/// throughput figures end here.
BITTORCH_TRAIN_API void synchronize(c10::Device device);

}  // namespace bittorch::train
