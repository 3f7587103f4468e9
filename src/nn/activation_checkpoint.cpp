#include <bittorch/nn/activation_checkpoint.h>

#include "nn/autocast_cache_off.h"

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/utils.h>

namespace bittorch::nn {
namespace {

using torch::autograd::variable_list;

// The autocast state of the forward on every device type autocast knows, set again around
// the recomputation (the backward may run on another thread, whose state is its own).
struct AutocastState {
  struct Device {
    c10::DeviceType type;
    bool enabled;
    at::ScalarType dtype;
  };
  std::vector<Device> devices;

  static AutocastState current() {
    AutocastState state;
    for (const auto type : {c10::DeviceType::CPU, c10::DeviceType::CUDA}) {
      state.devices.push_back({type, at::autocast::is_autocast_enabled(type), at::autocast::get_autocast_dtype(type)});
    }
    return state;
  }
  void apply() const {
    for (const auto& device : devices) {
      at::autocast::set_autocast_enabled(device.type, device.enabled);
      at::autocast::set_autocast_dtype(device.type, device.dtype);
    }
  }
};

// The backward node: the forward once more with gradients, then back through it.
class RecomputeBackward final : public torch::autograd::Node {
 public:
  // `inputs`: detached from the forward's graph, each requiring gradients as its input did.
  RecomputeBackward(CheckpointedFunction run, std::vector<at::Tensor> inputs)
      : run_(std::move(run)), inputs_(std::move(inputs)), autocast_(AutocastState::current()) {}

  std::string name() const override { return "bittorch::nn::RecomputeBackward"; }

  variable_list apply(variable_list&& grads) override {
    TORCH_CHECK(run_ != nullptr, "bittorch::nn::checkpointed: the backward ran twice (retain_graph is not supported)");
    // The saved inputs become the recomputation's leaves; the backward runs once.
    const auto leaves = std::move(inputs_);
    const auto run = std::move(run_);
    run_ = nullptr;
    std::vector<at::Tensor> outputs;
    {
      const auto before = AutocastState::current();
      autocast_.apply();
      const torch::AutoGradMode enable_grad(true);
      const detail::AutocastCacheOff fresh_casts;  // no cast of this step's weights outlives it
      try {
        outputs = run(leaves);
      } catch (...) {
        before.apply();
        throw;
      }
      before.apply();
    }
    TORCH_CHECK(outputs.size() == grads.size(), "bittorch::nn::checkpointed: the recomputation made ", outputs.size(),
                " outputs, the forward ", grads.size());
    variable_list roots, root_grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (grads[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        root_grads.push_back(grads[i]);
      }
    }
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);
    variable_list input_grads;
    for (const auto& leaf : leaves) input_grads.push_back(leaf.defined() ? leaf.grad() : at::Tensor());
    return input_grads;
  }

 private:
  CheckpointedFunction run_;
  std::vector<at::Tensor> inputs_;
  AutocastState autocast_;
};

}  // namespace

std::vector<at::Tensor> checkpointed(const CheckpointedFunction& run, const std::vector<at::Tensor>& inputs) {
  if (!at::GradMode::is_enabled()) return run(inputs);
  std::vector<at::Tensor> outputs;
  {
    const torch::NoGradGuard no_grad;
    outputs = run(inputs);
  }
  std::vector<at::Tensor> saved;
  for (const auto& input : inputs)
    saved.push_back(input.defined() ? input.detach().requires_grad_(input.requires_grad()) : input);
  auto node =
      std::shared_ptr<RecomputeBackward>(new RecomputeBackward(run, std::move(saved)), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  for (const auto& output : outputs) {
    TORCH_CHECK(!output.defined() || at::isFloatingType(output.scalar_type()),
                "bittorch::nn::checkpointed: outputs must be floating point, not ", output.scalar_type());
    torch::autograd::set_history(output, node);
  }
  return outputs;
}

}  // namespace bittorch::nn
