#pragma once

// ZeRO stage 2's gradient reduction, behind DataParallelOptions::gradient_owner: each gradient
// is summed on the rank that owns its parameter (a c10d reduce, not an all-reduce), and the
// other ranks free it once it is sent, so that a rank ends the backward holding the gradients
// of its own parameters only.
//
// The reduces are launched from hooks on the parameters' gradient accumulators as soon as the
// gradients are ready, in one fixed order on every rank (the reverse of the parameters', the
// order a backward produces them in; a gradient ready early waits for those before it), and at
// most `in_flight_bytes` of them are in flight: beyond that the oldest is waited for and its
// gradient freed, which bounds the gradients held during the backward.

#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace bittorch::distributed::detail {

class ShardedGradients {
 public:
  /// `names[i]` names `parameters[i]` in errors; `owner` gives each parameter's rank.
  ShardedGradients(std::vector<at::Tensor> parameters, std::vector<std::string> names,
                   const std::function<int64_t(const at::Tensor&)>& owner, c10::intrusive_ptr<c10d::ProcessGroup> group,
                   int64_t in_flight_bytes, bool bf16);
  ~ShardedGradients();
  ShardedGradients(const ShardedGradients&) = delete;
  ShardedGradients& operator=(const ShardedGradients&) = delete;

  /// loss.backward(); with `sync`, the gradients reduced to their owners' means and freed on
  /// the other ranks before it returns. Without, the gradients accumulate locally (whole).
  void backward(const at::Tensor& loss, bool sync);

 private:
  struct InFlight {
    size_t index;
    at::Tensor buffer;  // the gradient itself, or its bfloat16 / contiguous copy
    c10::intrusive_ptr<c10d::Work> work;
  };

  void on_gradient_ready(size_t index);
  void launch(size_t index);
  void retire_oldest();

  std::vector<at::Tensor> parameters_;
  std::vector<std::string> names_;
  std::vector<int64_t> owners_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  int64_t in_flight_limit_;
  bool bf16_;
  // The accumulators are held so that the hooks on them live as long as this object.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;

  std::mutex mutex_;  // the hooks run on the autograd engine's threads
  bool synchronizing_ = false;
  std::vector<bool> ready_;
  size_t next_ = 0;  // in launch order: parameters_.size() - 1 - next_ is launched next
  std::deque<InFlight> in_flight_;
  int64_t bytes_in_flight_ = 0;
};

}  // namespace bittorch::distributed::detail
