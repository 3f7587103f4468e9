#pragma once

// Data parallelism for any torch::nn::Module on c10d's Reducer, the engine under PyTorch's
// DistributedDataParallel: parameters and buffers broadcast from rank 0 at the start;
// gradients all-reduced in buckets (about 25 MB) launched from autograd hooks as soon as a
// bucket's gradients are ready, so that communication overlaps the rest of the backward;
// averaged over the ranks. Ternary layers need nothing special: their FP32 master weights are
// ordinary parameters. With gradient_owner (ZeRO stage 2, beside train::ShardedAdamW), each
// gradient is reduced to the rank that updates its parameter instead, and freed on the others.

#include <bittorch/train/export.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

namespace c10d {
class Logger;
class Reducer;
}  // namespace c10d

namespace bittorch::distributed {
namespace detail {
class ShardedGradients;
}  // namespace detail

struct BITTORCH_TRAIN_API DataParallelOptions {
  /// Bucket size in MiB (DDP's default, 25); the bucket of the first parameters, whose
  /// gradients come last, is 1 MiB, so that the all-reduce left after the backward is short.
  TORCH_ARG(double, bucket_cap_mb) = 25.0;
  /// Communicate the gradients in bfloat16 (half the bytes; the average rounded to 8 bits of
  /// mantissa), as DDP's bf16_compress_hook.
  TORCH_ARG(bool, bf16_gradients) = false;
  /// ZeRO stage 2: the rank that updates each parameter (train::ShardedAdamW::owner). Each
  /// gradient is then summed on that rank alone (a reduce, not an all-reduce) and freed on the
  /// others once sent, so that a rank holds only its own parameters' gradients after the
  /// backward (about bucket_cap_mb more during it). The optimizer must update exactly the
  /// parameters a rank owns; gradient clipping needs the norm over ranks (Trainer takes it).
  /// Unset: every gradient all-reduced.
  TORCH_ARG(std::function<int64_t(const at::Tensor&)>, gradient_owner);
};

/// Where one synchronized backward spent its time, as c10d's Reducer records it (CUDA events
/// on a GPU, the host clock on the CPU) for the iterations it samples: the first ten, then
/// every hundredth (DDP's runtime statistics).
struct CommunicationTimes {
  int64_t iteration = 0;           // the sampled optimizer step, counted from 1
  double backward_compute_ms = 0;  // the backward, from its start to its last gradient
  double all_reduce_ms = 0;        // from the first bucket's all-reduce to the last one's end
  double overlap_ms = 0;           // the part of all_reduce_ms the backward still ran in
  /// What the step waited for the all-reduce after its backward: all_reduce_ms - overlap_ms.
  double exposed_ms() const { return all_reduce_ms - overlap_ms; }
};

class BITTORCH_TRAIN_API DataParallel {
 public:
  /// Wraps `module` (its parameters are registered now: add none later); broadcasts its
  /// parameters and buffers from rank 0 of `group`.
  DataParallel(torch::nn::Module& module, c10::intrusive_ptr<c10d::ProcessGroup> group,
               const DataParallelOptions& options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// loss.backward(), with the gradients all-reduced to their mean over the ranks before it
  /// returns. sync = false is DDP's no_sync: a local backward whose gradients accumulate into
  /// the next synchronized one (gradient accumulation's earlier micro-batches). Every
  /// parameter must receive a gradient in a synchronized backward.
  void backward(const at::Tensor& loss, bool sync = true);

  /// This rank's figures of the latest sampled synchronized backward that has finished (its
  /// CUDA events are waited for); nullopt before the first, and with sharded gradients (no
  /// Reducer records them).
  std::optional<CommunicationTimes> last_communication_times();

  /// The mean of `value` over the ranks (validation losses, metrics).
  double mean_over_ranks(double value);
  /// The sum of `value` over the ranks (token counts).
  double sum_over_ranks(double value);
  /// The sum of `value` over the ranks, on its device (no wait for a GPU).
  at::Tensor sum_over_ranks(const at::Tensor& value);

  /// Whether each rank keeps only its own parameters' gradients (gradient_owner is set).
  bool shards_gradients() const { return sharded_ != nullptr; }

  int64_t rank() const;
  int64_t world_size() const;
  const c10::intrusive_ptr<c10d::ProcessGroup>& group() const { return group_; }

 private:
  double all_reduce_scalar(double value, bool mean);

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::vector<at::Tensor> parameters_;
  // Shared: c10d's Logger, which turns the Reducer's timings into figures, holds it too.
  std::shared_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<c10d::Logger> logger_;
  std::unique_ptr<detail::ShardedGradients> sharded_;  // instead of the Reducer
};

/// Rank `rank`'s part of a step's global batch `indices` ([n], any dtype) among `ranks`
/// processes: equal parts of ceil(n / ranks), the global batch padded by repeating its first
/// elements (as PyTorch's DistributedSampler pads), so that no rank gets an empty batch.
BITTORCH_TRAIN_API at::Tensor shard_of_batch(const at::Tensor& indices, int64_t rank, int64_t ranks);

/// The same result without buckets or overlap: after a local backward, one blocking
/// all-reduce per parameter's gradient, divided by the world size (pytorch/examples'
/// cpp/distributed loop). The reference the tests compare DataParallel with.
BITTORCH_TRAIN_API void average_gradients_per_parameter(torch::nn::Module& module, c10d::ProcessGroup& group);

}  // namespace bittorch::distributed
