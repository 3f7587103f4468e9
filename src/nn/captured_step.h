#pragma once

// A step of fixed shapes recorded once in a CUDA graph and then launched whole: each replay
// is one call instead of one launch per kernel (the decode step of nn::Decoder). The CUDA
// types stay in captured_step.cpp, so the device-independent code includes this alone.

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace bittorch::nn::detail {

class CapturedStep {
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
/// are overwritten by each replay.
std::unique_ptr<CapturedStep> capture_cuda_graph(c10::Device device, const std::function<void()>& step);

}  // namespace bittorch::nn::detail
