#pragma once

// A step of fixed shapes recorded once in a CUDA graph and then launched whole: each replay
// is one call instead of one launch per kernel (the decode step of nn::Decoder, a training
// step of train::Trainer). The CUDA types stay in captured_step.cpp, so the
// device-independent code includes this alone.

#include <bittorch/export.h>

#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace bittorch::nn::detail {

class BITTORCH_API CapturedStep {
 public:
  virtual ~CapturedStep() = default;
  /// Runs the recorded kernels again, on the current stream, reading and writing the same
  /// memory as at capture.
  virtual void replay() = 0;
  /// Nodes (kernels, copies, memsets) of the graph.
  virtual int64_t nodes() const = 0;
};

/// `step` recorded on a side stream of `device` (captured, not run), or null where this build
/// has no CUDA kernels. Its lazy set-up (tables, workspaces, kept weights) must have run
/// before: call it once eagerly first. Tensors it allocates come from the graph's own pool and
/// are overwritten by each replay. With `release_cached_memory` the caching allocator first
/// returns the blocks it holds unused, so that the graph's pool does not come on top of the
/// eager steps' cache (a training step's activations). Random numbers the step draws come
/// from the device's default generator or one of `generators`, which the graph advances at
/// each replay as the same calls would without it.
BITTORCH_API std::unique_ptr<CapturedStep> capture_cuda_graph(c10::Device device, const std::function<void()>& step,
                                                              bool release_cached_memory = false,
                                                              const std::vector<at::Generator>& generators = {});

/// Whether the current stream of `device` is being captured into a CUDA graph: work enqueued
/// now runs only when the graph is replayed (false on other devices and without CUDA kernels).
BITTORCH_API bool stream_is_capturing(c10::Device device);

}  // namespace bittorch::nn::detail
