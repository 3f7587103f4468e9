#include "nn/captured_step.h"

#ifdef BITTORCH_CUDA_KERNELS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace bittorch::nn::detail {

#ifdef BITTORCH_CUDA_KERNELS
namespace {

class CudaGraphStep final : public CapturedStep {
 public:
  CudaGraphStep(c10::Device device, const std::function<void()>& step, bool release_cached_memory,
                const std::vector<at::Generator>& generators)
      : device_(device) {
    const c10::cuda::CUDAGuard device_guard(device);
    if (release_cached_memory) {
      C10_CUDA_CHECK(cudaDeviceSynchronize());  // the eager work that frees blocks has finished
      c10::cuda::CUDACachingAllocator::emptyCache();
    }
    {
      // A graph is captured on a stream other than the default one; it replays on any.
      const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index()));
      for (const auto& generator : generators) graph_.register_generator_state(generator);
      graph_.capture_begin();
      try {
        step();
      } catch (...) {
        // End the capture so that the stream works again; the step's error is the one to report.
        try {
          graph_.capture_end();
        } catch (...) {
        }
        throw;
      }
      graph_.capture_end();
    }
    size_t count = 0;
    C10_CUDA_CHECK(cudaGraphGetNodes(graph_.raw_cuda_graph(), nullptr, &count));
    nodes_ = static_cast<int64_t>(count);
    graph_.instantiate();
  }

  void replay() override {
    const c10::cuda::CUDAGuard device_guard(device_);
    graph_.replay();
  }

  int64_t nodes() const override { return nodes_; }

 private:
  c10::Device device_;
  at::cuda::CUDAGraph graph_{/*keep_graph=*/true};  // kept, so that its nodes can be counted
  int64_t nodes_ = 0;
};

}  // namespace

std::unique_ptr<CapturedStep> capture_cuda_graph(c10::Device device, const std::function<void()>& step,
                                                 bool release_cached_memory,
                                                 const std::vector<at::Generator>& generators) {
  return std::make_unique<CudaGraphStep>(device, step, release_cached_memory, generators);
}

bool stream_is_capturing(c10::Device device) {
  if (!device.is_cuda()) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(device.index()), &status));
  return status != cudaStreamCaptureStatusNone;
}
#else
std::unique_ptr<CapturedStep> capture_cuda_graph(c10::Device /*device*/, const std::function<void()>& /*step*/,
                                                 bool /*release_cached_memory*/,
                                                 const std::vector<at::Generator>& /*generators*/) {
  return nullptr;
}

bool stream_is_capturing(c10::Device /*device*/) {
  return false;
}
#endif

}  // namespace bittorch::nn::detail
