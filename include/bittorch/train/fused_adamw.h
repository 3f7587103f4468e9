#pragma once

// AdamW as one multi-tensor update: ATen's fused AdamW kernel (the op behind PyTorch's
// `torch.optim.AdamW(fused=True)`, on the CPU and CUDA) over all parameters of a group that
// share a device and dtype, instead of LibTorch's loop of a dozen small kernels per parameter.
//
//   bittorch::train::FusedAdamW optimizer(model->parameters(),
//                                         torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
//
// It is a torch::optim::AdamW: the same options, parameter groups, state (AdamWParamState) and
// save/load, so checkpoints move between the two; only step() differs. The arithmetic is
// AdamW's (decoupled decay, bias-corrected moments); results agree with LibTorch's loop to
// float32 rounding.

#include <bittorch/train/export.h>

#include <torch/optim/adamw.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace bittorch::train {

class BITTORCH_TRAIN_API FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  /// One AdamW step of every parameter that has a gradient (sparse gradients are refused);
  /// the closure, if any, is evaluated first with gradients on, as AdamW::step does.
  torch::Tensor step(LossClosure closure = nullptr) override;

 protected:
  /// Whether step() updates `parameter` (all that have gradients here; ShardedAdamW its own).
  virtual bool steps_parameter(const at::Tensor& parameter) const;

 private:
  // The step count of each parameter as the float32 device tensor the fused kernel reads,
  // beside AdamWParamState's int64 count (which is what is saved); rebuilt from it when they
  // differ (a new parameter, a loaded state).
  struct DeviceStep {
    torch::Tensor count;
    int64_t host = -1;
  };
  std::unordered_map<void*, DeviceStep> device_steps_;
};

}  // namespace bittorch::train
