#include <bittorch/train/sharded_adamw.h>

#include "distributed/heartbeat.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <numeric>

namespace bittorch::train {
namespace {

void* key_of(const at::Tensor& tensor) {
  return tensor.unsafeGetTensorImpl();
}

}  // namespace

ShardedAdamW::ShardedAdamW(const std::vector<torch::optim::OptimizerParamGroup>& groups,
                           torch::optim::AdamWOptions defaults, c10::intrusive_ptr<c10d::ProcessGroup> process_group)
    : FusedAdamW(groups, std::move(defaults)), process_group_(std::move(process_group)) {
  TORCH_CHECK(process_group_, "ShardedAdamW: no process group");
  const int64_t ranks = process_group_->getSize();
  // The largest parameters first, each to the rank that holds the fewest elements so far
  // (ties to the lowest rank): the same assignment on every rank.
  std::vector<at::Tensor> parameters;
  for (const auto& group : param_groups()) {
    for (const auto& p : group.params()) parameters.push_back(p);
  }
  std::vector<size_t> order(parameters.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return parameters[a].numel() > parameters[b].numel(); });
  std::vector<int64_t> load(static_cast<size_t>(ranks), 0);
  for (const size_t i : order) {
    const auto rank = std::min_element(load.begin(), load.end()) - load.begin();
    owners_[key_of(parameters[i])] = rank;
    load[static_cast<size_t>(rank)] += parameters[i].numel();
  }
  owned_by_rank_.resize(static_cast<size_t>(ranks));
  for (const auto& p : parameters) owned_by_rank_[static_cast<size_t>(owner(p))].push_back(p);
}

int64_t ShardedAdamW::owner(const at::Tensor& parameter) const {
  const auto found = owners_.find(key_of(parameter));
  TORCH_CHECK(found != owners_.end(), "ShardedAdamW: the tensor is none of the optimizer's parameters");
  return found->second;
}

bool ShardedAdamW::steps_parameter(const at::Tensor& parameter) const {
  return owner(parameter) == process_group_->getRank();
}

torch::Tensor ShardedAdamW::step(LossClosure closure) {
  auto loss = FusedAdamW::step(std::move(closure));
  const torch::NoGradGuard no_grad;
  for (size_t rank = 0; rank < owned_by_rank_.size(); ++rank) {
    if (owned_by_rank_[rank].empty()) continue;
    std::vector<at::Tensor> tensors;
    for (const auto& p : owned_by_rank_[rank]) tensors.push_back(p.detach());
    distributed::detail::broadcast_from(process_group_, tensors, static_cast<int>(rank));
  }
  return loss;
}

int64_t ShardedAdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& [key, state] : state_) {
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*state);
    for (const auto& t : {adam.exp_avg(), adam.exp_avg_sq(), adam.max_exp_avg_sq()}) {
      if (t.defined()) bytes += static_cast<int64_t>(t.nbytes());
    }
  }
  return bytes;
}

void ShardedAdamW::gather_state() {
  const int64_t rank = process_group_->getRank();
  const torch::NoGradGuard no_grad;
  int tag = 0;  // three messages a parameter: its two moments and its step count
  for (size_t owner_rank = 1; owner_rank < owned_by_rank_.size(); ++owner_rank) {
    for (const auto& p : owned_by_rank_[owner_rank]) {
      tag += 3;
      if (rank != 0 && rank != static_cast<int64_t>(owner_rank)) continue;
      auto& slot = state_[key_of(p)];
      std::vector<std::vector<at::Tensor>> messages;
      if (rank != 0) {
        TORCH_CHECK(slot != nullptr, "ShardedAdamW::gather_state: rank ", rank,
                    " owns a parameter it has no state for (gathered before the first step?)");
        const auto& adam = static_cast<torch::optim::AdamWParamState&>(*slot);
        messages = {{adam.exp_avg()}, {adam.exp_avg_sq()}, {at::full({1}, adam.step(), p.options().dtype(at::kLong))}};
        distributed::detail::naming_stopped_ranks(*process_group_, [&] {
          for (int i = 0; i < 3; ++i) process_group_->send(messages[i], 0, tag + i)->wait();
        });
        continue;
      }
      messages = {{at::empty_like(p)}, {at::empty_like(p)}, {at::empty({1}, p.options().dtype(at::kLong))}};
      distributed::detail::naming_stopped_ranks(*process_group_, [&] {
        for (int i = 0; i < 3; ++i) process_group_->recv(messages[i], static_cast<int>(owner_rank), tag + i)->wait();
      });
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->exp_avg(messages[0][0]);
      state->exp_avg_sq(messages[1][0]);
      state->step(messages[2][0].item<int64_t>());
      slot = std::move(state);
    }
  }
}

void ShardedAdamW::drop_unowned_state() {
  const int64_t rank = process_group_->getRank();
  for (auto it = state_.begin(); it != state_.end();) {
    const auto found = owners_.find(it->first);
    it = found != owners_.end() && found->second != rank ? state_.erase(it) : std::next(it);
  }
}

}  // namespace bittorch::train
