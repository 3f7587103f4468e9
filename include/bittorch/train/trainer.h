#pragma once

// The training loop every BitTorch trainer shares: steps grouped into epochs (a pass over the
// data, or the interval between evaluations of a language model), with gradient accumulation
// and clipping, a learning-rate schedule, progress and throughput, a divergence stop,
// evaluation, a record per epoch, checkpoints after every epoch and resume.
//
//   bittorch::train::Trainer trainer(*model, optimizer,
//       bittorch::train::TrainerOptions(/*total_steps=*/epochs * batches, /*steps_per_epoch=*/batches)
//           .schedule(bittorch::train::LrScheduleOptions().decay(LrDecay::Cosine).total_steps(epochs * batches))
//           .checkpoint_path("run.ckpt"));
//   bittorch::train::TrainerHooks hooks;
//   hooks.step = [&](const bittorch::train::StepContext& c) { ...; return StepOutput{loss, batch_size}; };
//   hooks.evaluate = [&] { return nlohmann::json{{"test_loss", ...}}; };
//   trainer.fit(hooks);

#include <bittorch/distributed/data_parallel.h>
#include <bittorch/train/checkpoint.h>
#include <bittorch/train/export.h>
#include <bittorch/train/progress.h>
#include <bittorch/train/schedule.h>

#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bittorch::nn::detail {
class CapturedStep;
}

namespace bittorch::train {

class ShardedAdamW;

/// Where the loop is when it asks for a loss.
struct StepContext {
  int64_t epoch = 1;          ///< 1-based
  int64_t step = 0;           ///< optimizer steps taken before this one, over the whole run
  int64_t step_in_epoch = 0;  ///< 0-based
  int64_t micro_step = 0;     ///< 0-based, below accumulation_steps
};

/// What one (micro-)step computed: the mean loss over its batch, with its autograd graph, and
/// how many samples or tokens the batch held.
struct StepOutput {
  torch::Tensor loss;
  int64_t items = 0;
};

/// A data-parallel wrapper the trainer uses but does not own (TORCH_ARG needs one token).
using DataParallelHandle = distributed::DataParallel*;

struct BITTORCH_TRAIN_API TrainerOptions {
  TrainerOptions(int64_t total_steps, int64_t steps_per_epoch);

  /// Optimizer steps of the whole run (0: nothing to train).
  TORCH_ARG(int64_t, total_steps);
  /// Steps between evaluations, records and checkpoints; the last epoch may be shorter.
  TORCH_ARG(int64_t, steps_per_epoch);
  /// End this invocation after epoch N (0: run to the end); resume() continues it.
  TORCH_ARG(int64_t, stop_after_epoch) = 0;
  /// Losses (micro-batches) per optimizer step; their gradients are averaged.
  TORCH_ARG(int64_t, accumulation_steps) = 1;
  /// Clip the gradients' global L2 norm to this before each step (0: no clipping).
  TORCH_ARG(double, max_grad_norm) = 0.0;
  TORCH_ARG(LrScheduleOptions, schedule) = {};
  /// Names the run in logs and is the "kind" of its checkpoints' model description.
  TORCH_ARG(std::string, label) = "model";
  /// What StepOutput::items counts, for throughput: "samples", "tokens".
  TORCH_ARG(std::string, unit) = "samples";
  /// Progress within an epoch: a bar on a terminal, else log lines (Auto).
  TORCH_ARG(ProgressStyle, progress) = ProgressStyle::Auto;
  /// Steps between reads of the running loss (each one waits for the GPU) and divergence checks.
  TORCH_ARG(int64_t, loss_check_every) = 20;
  /// Write a checkpoint here after every epoch ("" : none).
  TORCH_ARG(std::string, checkpoint_path) = "";
  /// Ends the message that stops a diverged run: what the user can change.
  TORCH_ARG(std::string, divergence_hint) = "lower the learning rate";
  /// Where the model is: timings wait for its queued work, checkpoints load onto it.
  TORCH_ARG(c10::Device, device) = c10::kCPU;
  /// Data parallelism (not owned; null: this process alone): backward goes through it, the
  /// gradients averaged over the ranks on a step's last micro-batch (the others accumulate
  /// locally, no_sync); records hold global figures (train loss averaged, items summed over
  /// the ranks); only rank 0 logs, shows progress and writes checkpoints. Every rank runs the
  /// same steps; step hooks give each rank its own shard of the batch.
  TORCH_ARG(DataParallelHandle, data_parallel) = nullptr;
  /// Record the forward and backward of a step (all its micro-batches) in a CUDA graph once
  /// kEagerStepsBeforeGraph steps have run eagerly, and replay it for every step after: one
  /// launch instead of one per kernel. Clipping and the optimizer step run eagerly after each
  /// replay. Needs a CUDA device, no data parallelism, and hooks.load_batch (see there).
  TORCH_ARG(bool, cuda_graph) = false;
};

/// Steps a cuda_graph trainer runs eagerly before it records one: the lazy set-up of the
/// first steps (optimizer state, tables, workspaces) must not land in the graph.
constexpr int64_t kEagerStepsBeforeGraph = 2;

/// A c10::Error naming the field of `options` that is unusable.
BITTORCH_TRAIN_API void check_trainer_options(const TrainerOptions& options);

struct TrainerHooks {
  /// Computes the loss of step `context` (required). The loop does the rest: zero_grad,
  /// backward, clipping, the learning rate and the optimizer step.
  std::function<StepOutput(const StepContext& context)> step;
  /// Called before each (micro-)step, first, to write that step's batch into tensors that
  /// `step` reads, and for host-side settings that change from step to step; optional, but
  /// required with TrainerOptions::cuda_graph. There `step` runs once per micro-step, while
  /// the graph is recorded, and its kernels are replayed at every step after: it must read
  /// the batch from the same tensors every time and leave per-step host work to load_batch.
  std::function<void(const StepContext& context)> load_batch;
  /// Fields to add to each epoch's record (say {"test_loss": 0.3}), called after every epoch
  /// with the model in eval mode and gradients off; optional.
  std::function<nlohmann::json()> evaluate;
  /// Called with each epoch's record after it is logged and checkpointed; optional.
  std::function<void(const nlohmann::json& record)> epoch_end;
};

class BITTORCH_TRAIN_API Trainer {
 public:
  /// `model` and `optimizer` (over the model's parameters, at their peak learning rates) must
  /// outlive the trainer.
  Trainer(torch::nn::Module& model, torch::optim::Optimizer& optimizer, TrainerOptions options);
  ~Trainer();

  /// The settings a resumed run must share (data, batch size, learning rate, seed...): stored
  /// in checkpoints beside the trainer's own (steps per epoch, accumulation, clipping,
  /// schedule), which are added under "trainer".
  void set_settings(nlohmann::json settings);
  /// The settings as checkpoints store them.
  const nlohmann::json& settings() const { return settings_; }

  /// Continues the run saved in the checkpoint at `path`: model, optimizer, position,
  /// schedule and records. Every check of load_checkpoint, the settings included, comes
  /// before a tensor is loaded: a refused checkpoint leaves the model as it was.
  CheckpointMetadata resume(const std::string& path);

  /// Trains from the current position to the end of the run (or stop_after_epoch). A loss
  /// that is not finite stops the run with a c10::Error naming the epoch, the step and the
  /// learning rate. Returns every epoch's record so far, a resumed run's earlier ones included:
  /// {"epoch", "steps", "train_loss", "step_losses" (each optimizer step's loss, this process's
  /// batches), "seconds", "<unit>_per_second", evaluate's fields}.
  const nlohmann::json& fit(const TrainerHooks& hooks);

  int64_t epochs() const;
  int64_t epochs_done() const { return epochs_done_; }
  int64_t steps_done() const { return steps_done_; }
  const nlohmann::json& history() const { return history_; }
  const TrainerOptions& options() const { return options_; }

 private:
  double current_lr() const;
  bool reports() const;  // whether this rank logs, shows progress and writes checkpoints
  nlohmann::json train_epoch(int64_t epoch, const TrainerHooks& hooks);
  // The forward and backward of one step, its micro-batches' gradients accumulated and their
  // mean loss added to `loss_sum` (0-dim float64 on the device); returns the step's items.
  int64_t forward_backward(const StepContext& context, const TrainerHooks& hooks, const torch::Tensor& loss_sum);
  // A step's forward and backward, eagerly or by replaying the recorded graph (recording it
  // first where cuda_graph asks): its mean loss added to `step_loss` (zero before), its items
  // returned.
  int64_t run_step(const StepContext& context, const TrainerHooks& hooks, const torch::Tensor& step_loss);

  torch::nn::Module& model_;
  torch::optim::Optimizer& optimizer_;
  ShardedAdamW* sharded_optimizer_;  // the optimizer, when it shards its state over ranks
  TrainerOptions options_;
  std::vector<torch::Tensor> parameters_;  // the model's, gathered once (clipping)
  std::unique_ptr<WarmupDecayLR> scheduler_;
  nlohmann::json settings_;
  nlohmann::json history_ = nlohmann::json::array();
  int64_t epochs_done_ = 0, steps_done_ = 0;
  // cuda_graph: the steps run eagerly by this trainer, and the recorded step with the loss
  // tensor it writes and the items it yields at each replay.
  int64_t eager_steps_ = 0;
  std::unique_ptr<nn::detail::CapturedStep> graph_;
  torch::Tensor graph_loss_;
  int64_t graph_items_ = 0;
};

}  // namespace bittorch::train
