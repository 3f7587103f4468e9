#include <bittorch/train/fused_adamw.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <map>
#include <tuple>

namespace bittorch::train {

bool FusedAdamW::steps_parameter(const at::Tensor& /*parameter*/) const {
  return true;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure != nullptr) {
    const torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    // One fused call per device and dtype among the group's parameters that have gradients.
    struct Lists {
      std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
    };
    std::map<std::tuple<c10::DeviceType, c10::DeviceIndex, c10::ScalarType>, Lists> batches;
    for (auto& p : group.params()) {
      if (!p.grad().defined() || !steps_parameter(p)) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "FusedAdamW: sparse gradients are not supported");
      auto* key = p.unsafeGetTensorImpl();
      auto& slot = state_[key];
      if (slot == nullptr) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        if (options.amsgrad()) fresh->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      auto& device_step = device_steps_[key];
      if (device_step.host != state.step() || !device_step.count.defined() ||
          device_step.count.device() != p.device()) {
        device_step.count =
            torch::full({}, static_cast<double>(state.step()), torch::dtype(torch::kFloat).device(p.device()));
      }
      state.step(state.step() + 1);
      device_step.host = state.step();
      auto& lists = batches[{p.device().type(), p.device().index(), p.scalar_type()}];
      lists.params.push_back(p);
      lists.grads.push_back(p.grad());
      lists.exp_avgs.push_back(state.exp_avg());
      lists.exp_avg_sqs.push_back(state.exp_avg_sq());
      if (options.amsgrad()) lists.max_exp_avg_sqs.push_back(state.max_exp_avg_sq());
      lists.steps.push_back(device_step.count);
    }
    const auto [beta1, beta2] = options.betas();
    for (auto& [where, lists] : batches) {
      at::_foreach_add_(lists.steps, 1);  // the kernel reads the count of the step it takes
      at::_fused_adamw_(lists.params, lists.grads, lists.exp_avgs, lists.exp_avg_sqs, lists.max_exp_avg_sqs,
                        lists.steps, options.lr(), beta1, beta2, options.weight_decay(), options.eps(),
                        options.amsgrad(), /*maximize=*/false);
    }
  }
  return loss;
}

}  // namespace bittorch::train
