#include "ops/common/cuda/device.h"

#include <ATen/cuda/CUDAContext.h>

namespace bittorch::ops::cuda {

bool has_fp8_tensor_cores(c10::DeviceIndex device) {
  const auto* props = at::cuda::getDeviceProperties(device < 0 ? at::cuda::current_device() : device);
  return props->major * 10 + props->minor >= 89;
}

}  // namespace bittorch::ops::cuda
