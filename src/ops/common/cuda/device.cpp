#include "ops/common/cuda/device.h"

#include <ATen/cuda/CUDAContext.h>

#include <cstdlib>

namespace bittorch::ops::cuda {

bool has_fp8_tensor_cores(c10::DeviceIndex device) {
  const auto* props = at::cuda::getDeviceProperties(device < 0 ? at::cuda::current_device() : device);
  return props->major * 10 + props->minor >= 89;
}

bool runs_sm90a(c10::Device device) {
  const auto* props = at::cuda::getDeviceProperties(device.index() < 0 ? at::cuda::current_device() : device.index());
  return props->major == 9 && props->minor == 0;
}

bool dependent_launch_enabled() {
  static const bool switched_off = std::getenv("BITTORCH_NO_DEPENDENT_LAUNCH") != nullptr;
  return !switched_off && at::cuda::getCurrentDeviceProperties()->major >= 9;
}

}  // namespace bittorch::ops::cuda
