#pragma once

#include <c10/core/Device.h>

namespace bittorch::ops::cuda {

/// Whether CUDA device `device` (-1: the current one) has FP8 tensor cores (sm_89 and later).
bool has_fp8_tensor_cores(c10::DeviceIndex device = -1);

/// Whether `device` runs sm_90a code (wgmma, TMA multicast): compute capability 9.0 exactly.
bool runs_sm90a(c10::Device device);

/// Whether kernels are launched as programmatic dependents on the current device
/// (dependent_launch.cuh): sm_90 and later, unless BITTORCH_NO_DEPENDENT_LAUNCH is set.
bool dependent_launch_enabled();

}  // namespace bittorch::ops::cuda
