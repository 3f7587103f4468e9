#pragma once

// ZeRO stage 1 for data parallelism: the AdamW state (float32 moments, 8 bytes a parameter)
// split over the ranks instead of held by each. Every parameter has one owner rank (whole
// tensors, balanced by size); each rank updates the parameters it owns, from the gradients
// DataParallel averaged, and the updated parameters are broadcast from their owners.
//
//   bittorch::train::ShardedAdamW optimizer(groups, torch::optim::AdamWOptions(lr), process_group);
//
// The updates are FusedAdamW's, so training equals unsharded training. For checkpoints
// Trainer gathers the moments on rank 0 before it writes (gather_state) and drops the others'
// again after (drop_unowned_state); a checkpoint is FusedAdamW's, which resumes sharded or not
// on any number of processes.

#include <bittorch/train/export.h>
#include <bittorch/train/fused_adamw.h>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace bittorch::train {

class BITTORCH_TRAIN_API ShardedAdamW : public FusedAdamW {
 public:
  ShardedAdamW(const std::vector<torch::optim::OptimizerParamGroup>& groups, torch::optim::AdamWOptions defaults,
               c10::intrusive_ptr<c10d::ProcessGroup> process_group);

  /// The owners' AdamW steps (every rank must call it, with the same gradients), then each
  /// parameter broadcast from its owner.
  torch::Tensor step(LossClosure closure = nullptr) override;

  /// The rank that updates `parameter` (one of this optimizer's).
  int64_t owner(const at::Tensor& parameter) const;
  /// Bytes of AdamW state this rank holds.
  int64_t state_bytes() const;

  /// Every rank: rank 0 receives the moments of the parameters the others own (so that it
  /// holds the whole state, as an unsharded optimizer would, to save it).
  void gather_state();
  /// Drops the state of the parameters this rank does not own (after a save, or a load of a
  /// whole state).
  void drop_unowned_state();

 protected:
  bool steps_parameter(const at::Tensor& parameter) const override;

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> process_group_;
  std::unordered_map<const void*, int64_t> owners_;     // by TensorImpl
  std::vector<std::vector<at::Tensor>> owned_by_rank_;  // each rank's parameters, in group order
};

}  // namespace bittorch::train
