// FusedAdamW against LibTorch's AdamW (the per-parameter loop, the reference): parameters and
// moments over several steps, with two parameter groups, AMSGrad, a changing learning rate,
// parameters without gradients; and checkpoints that move between the two.

#include <bittorch/train/fused_adamw.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

namespace {

using torch::optim::AdamW;
using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;
using torch::optim::OptimizerParamGroup;

// Two groups (matrices with decay, vectors without) over copies of the same tensors.
std::vector<OptimizerParamGroup> groups_of(const std::vector<torch::Tensor>& params, bool amsgrad) {
  const auto options = [&](double decay) {
    return std::make_unique<AdamWOptions>(AdamWOptions(2e-2).betas({0.9, 0.95}).weight_decay(decay).amsgrad(amsgrad));
  };
  return {OptimizerParamGroup({params[0], params[1]}, options(0.1)), OptimizerParamGroup({params[2]}, options(0.0))};
}

std::vector<torch::Tensor> make_params() {
  torch::manual_seed(5);
  return {torch::randn({7, 5}).requires_grad_(), torch::randn({33}).requires_grad_(),
          torch::randn({3, 1, 4}).requires_grad_()};
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

// The same gradients for both sets: a fixed function of the step, all but `skipped` parameters.
void set_grads(std::vector<torch::Tensor>& params, int64_t step, int64_t skipped = -1) {
  torch::manual_seed(100 + step);
  for (size_t i = 0; i < params.size(); ++i) {
    auto g = torch::randn_like(params[i]) * (1.0 + static_cast<double>(i));
    params[i].mutable_grad() = static_cast<int64_t>(i) == skipped ? torch::Tensor() : g;
  }
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << what << ": max difference " << (a - b).abs().max().item<double>();
}

void expect_same_state(torch::optim::Optimizer& fused, torch::optim::Optimizer& reference,
                       const std::vector<torch::Tensor>& fused_params, const std::vector<torch::Tensor>& ref_params) {
  for (size_t i = 0; i < fused_params.size(); ++i) {
    expect_close(fused_params[i], ref_params[i], "parameter " + std::to_string(i));
    const auto& f = static_cast<AdamWParamState&>(*fused.state().at(fused_params[i].unsafeGetTensorImpl()));
    const auto& r = static_cast<AdamWParamState&>(*reference.state().at(ref_params[i].unsafeGetTensorImpl()));
    EXPECT_EQ(f.step(), r.step()) << "parameter " << i;
    expect_close(f.exp_avg(), r.exp_avg(), "exp_avg " + std::to_string(i));
    expect_close(f.exp_avg_sq(), r.exp_avg_sq(), "exp_avg_sq " + std::to_string(i));
  }
}

TEST(FusedAdamW, MatchesLibTorchsAdamWOverSteps) {
  for (const bool amsgrad : {false, true}) {
    auto fused_params = make_params(), ref_params = copies(fused_params);
    bittorch::train::FusedAdamW fused(groups_of(fused_params, amsgrad), AdamWOptions(2e-2));
    AdamW reference(groups_of(ref_params, amsgrad), AdamWOptions(2e-2));
    for (int64_t step = 0; step < 6; ++step) {
      // A learning rate that changes (a schedule), and a parameter without a gradient at step 2.
      for (auto* optimizer :
           {static_cast<torch::optim::Optimizer*>(&fused), static_cast<torch::optim::Optimizer*>(&reference)}) {
        for (auto& group : optimizer->param_groups()) group.options().set_lr(2e-2 / (1.0 + step));
      }
      set_grads(fused_params, step, step == 2 ? 1 : -1);
      set_grads(ref_params, step, step == 2 ? 1 : -1);
      fused.step();
      reference.step();
    }
    SCOPED_TRACE(amsgrad ? "amsgrad" : "adamw");
    expect_same_state(fused, reference, fused_params, ref_params);
  }
}

TEST(FusedAdamW, CheckpointsMoveBetweenItAndAdamW) {
  const auto path = std::filesystem::temp_directory_path() / "bittorch_fused_adamw_test.pt";
  auto params = make_params(), continued = copies(params);
  AdamW reference(groups_of(params, false), AdamWOptions(2e-2));
  bittorch::train::FusedAdamW straight(groups_of(continued, false), AdamWOptions(2e-2));
  for (int64_t step = 0; step < 3; ++step) {
    set_grads(params, step);
    set_grads(continued, step);
    reference.step();
    straight.step();
  }
  torch::save(reference, path.string());
  // AdamW's saved state continued by FusedAdamW equals FusedAdamW run straight through.
  auto resumed_params = copies(params);
  bittorch::train::FusedAdamW resumed(groups_of(resumed_params, false), AdamWOptions(2e-2));
  torch::load(resumed, path.string());
  for (int64_t step = 3; step < 5; ++step) {
    set_grads(resumed_params, step);
    set_grads(continued, step);
    resumed.step();
    straight.step();
  }
  expect_same_state(resumed, straight, resumed_params, continued);
  // And back: FusedAdamW's state loads into AdamW.
  torch::save(resumed, path.string());
  auto back_params = copies(resumed_params);
  AdamW back(groups_of(back_params, false), AdamWOptions(2e-2));
  torch::load(back, path.string());
  expect_same_state(resumed, back, resumed_params, back_params);
  std::filesystem::remove(path);
}

TEST(FusedAdamW, RefusesSparseGradients) {
  auto p = torch::zeros({4, 3}).requires_grad_();
  p.mutable_grad() = torch::eye(4, 3).to_sparse();
  bittorch::train::FusedAdamW optimizer({p}, AdamWOptions(1e-3));
  EXPECT_THROW(optimizer.step(), c10::Error);
}

}  // namespace
