#include "distributed/sharded_gradients.h"

#include "distributed/heartbeat.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace bittorch::distributed::detail {

ShardedGradients::ShardedGradients(std::vector<at::Tensor> parameters, std::vector<std::string> names,
                                   const std::function<int64_t(const at::Tensor&)>& owner,
                                   c10::intrusive_ptr<c10d::ProcessGroup> group, int64_t in_flight_bytes, bool bf16)
    : parameters_(std::move(parameters)),
      names_(std::move(names)),
      group_(std::move(group)),
      in_flight_limit_(in_flight_bytes),
      bf16_(bf16),
      ready_(parameters_.size(), false) {
  TORCH_CHECK(names_.size() == parameters_.size(), "ShardedGradients: a name per parameter");
  for (const auto& parameter : parameters_) {
    const int64_t rank = owner(parameter);
    TORCH_CHECK(rank >= 0 && rank < group_->getSize(), "DataParallel: gradient_owner gave rank ", rank,
                " for a parameter, not one of the ", group_->getSize(), " ranks");
    owners_.push_back(rank);
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    accumulators_.push_back(torch::autograd::impl::grad_accumulator(parameters_[i]));
    hook_keys_.push_back(accumulators_.back()->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient_ready(i);
          return outputs;
        })));
  }
}

ShardedGradients::~ShardedGradients() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void ShardedGradients::backward(const at::Tensor& loss, bool sync) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    synchronizing_ = sync;
    std::fill(ready_.begin(), ready_.end(), false);
    next_ = 0;
    in_flight_.clear();  // left by a backward that failed
    bytes_in_flight_ = 0;
  }
  naming_stopped_ranks(*group_, [&] {
    loss.backward();
    if (!sync) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    synchronizing_ = false;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      TORCH_CHECK(ready_[i], "DataParallel: parameter '", names_[i],
                  "' received no gradient in a synchronized backward; with sharded gradients every parameter "
                  "must take part in the loss");
    }
    while (!in_flight_.empty()) retire_oldest();
  });
}

void ShardedGradients::on_gradient_ready(size_t index) {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (!synchronizing_) return;
  TORCH_CHECK(!ready_[index], "DataParallel: the gradient of '", names_[index],
              "' was accumulated twice in one backward; with sharded gradients each parameter's gradient must be "
              "complete when it is first accumulated (a parameter used by two checkpointed calls is not)");
  ready_[index] = true;
  while (next_ < parameters_.size() && ready_[parameters_.size() - 1 - next_]) {
    launch(parameters_.size() - 1 - next_);
    ++next_;
  }
}

void ShardedGradients::launch(size_t index) {
  const auto gradient = parameters_[index].grad();
  TORCH_CHECK(gradient.defined(), "DataParallel: '", names_[index], "' has no gradient after its accumulation");
  // The mean as DDP takes it: each rank's part divided by the world size, then summed.
  at::Tensor buffer = bf16_ ? gradient.to(at::kBFloat16) : gradient.contiguous();
  buffer.div_(group_->getSize());
  c10d::ReduceOptions options;
  options.rootRank = owners_[index];
  std::vector<at::Tensor> tensors = {buffer};
  in_flight_.push_back({index, buffer, group_->reduce(tensors, options)});
  bytes_in_flight_ += static_cast<int64_t>(buffer.nbytes());
  // The newest stays in flight (it overlaps the rest of the backward); older ones are waited
  // for once the bytes in flight pass the limit.
  while (in_flight_.size() > 1 && bytes_in_flight_ > in_flight_limit_) retire_oldest();
}

void ShardedGradients::retire_oldest() {
  InFlight done = std::move(in_flight_.front());
  in_flight_.pop_front();
  bytes_in_flight_ -= static_cast<int64_t>(done.buffer.nbytes());
  done.work->wait();
  auto& gradient = parameters_[done.index].mutable_grad();
  if (owners_[done.index] != group_->getRank()) {
    gradient = at::Tensor();
  } else if (!done.buffer.is_same(gradient)) {
    gradient.copy_(done.buffer);
  }
  // A gradient viewing rows of a bigger tensor (a joined product's backward hands q, k and v
  // rows of one gradient) would keep all of it alive: the owner keeps a copy of its rows only.
  if (gradient.defined() && gradient.storage().nbytes() > gradient.nbytes()) gradient = gradient.clone();
}

}  // namespace bittorch::distributed::detail
