#include <bittorch/train/trainer.h>

#include "nn/captured_step.h"

#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/train/device.h>
#include <bittorch/train/progress.h>
#include <bittorch/train/sharded_adamw.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace bittorch::train {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The schedule fields that change the trajectory: a constant rate ignores the run's length.
nlohmann::json schedule_json(const LrScheduleOptions& s) {
  nlohmann::json json = {{"decay", to_string(s.decay())}, {"warmup_steps", s.warmup_steps()}};
  if (s.decay() != LrDecay::Constant)
    json.update({{"total_steps", s.total_steps()}, {"final_factor", s.final_factor()}});
  return json;
}

// Scales the gradients so that their global L2 norm is at most `max_norm`, with the arithmetic
// of torch::nn::utils::clip_grad_norm_ (max_norm / (norm + 1e-6), at most 1) but without its
// final .item(): no wait for the GPU at every step. With gradients sharded over the ranks of
// `parallel`, the norm is taken over all of them.
void clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm,
                    distributed::DataParallel* parallel) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  at::Tensor total_norm;
  if (parallel != nullptr && parallel->shards_gradients()) {
    // Every rank takes part, also one that owns no gradient.
    auto squares = grads.empty() ? torch::zeros({}, parameters.front().options().dtype(torch::kFloat))
                                 : at::stack(at::_foreach_norm(grads, 2)).square().sum();
    total_norm = parallel->sum_over_ranks(squares).sqrt();
  } else {
    if (grads.empty()) return;
    total_norm = at::stack(at::_foreach_norm(grads, 2)).norm();
  }
  if (!grads.empty()) at::_foreach_mul_(grads, (max_norm / (total_norm + 1e-6)).clamp_max(1.0));
}

// "test_loss": 0.31 -> "test loss 0.31", for the epoch's log line.
std::string describe_fields(const nlohmann::json& fields) {
  std::string text;
  for (const auto& [key, value] : fields.items()) {
    std::string name = key;
    std::replace(name.begin(), name.end(), '_', ' ');
    text += fmt::format(", {} {}", name,
                        value.is_number_float() ? fmt::format("{:.6g}", value.get<double>()) : value.dump());
  }
  return text;
}

}  // namespace

TrainerOptions::TrainerOptions(int64_t total_steps, int64_t steps_per_epoch)
    : total_steps_(total_steps), steps_per_epoch_(steps_per_epoch) {}

void check_trainer_options(const TrainerOptions& o) {
  const char* what = "bittorch::train::TrainerOptions";
  TORCH_CHECK(o.total_steps() >= 0, what, ": total_steps must be >= 0, not ", o.total_steps());
  TORCH_CHECK(o.steps_per_epoch() >= 1, what, ": steps_per_epoch must be >= 1, not ", o.steps_per_epoch());
  TORCH_CHECK(o.stop_after_epoch() >= 0, what, ": stop_after_epoch must be >= 0, not ", o.stop_after_epoch());
  TORCH_CHECK(o.accumulation_steps() >= 1, what, ": accumulation_steps must be >= 1, not ", o.accumulation_steps());
  TORCH_CHECK(o.max_grad_norm() >= 0 && std::isfinite(o.max_grad_norm()), what,
              ": max_grad_norm must be finite and >= 0, not ", o.max_grad_norm());
  TORCH_CHECK(o.loss_check_every() >= 1, what, ": loss_check_every must be >= 1, not ", o.loss_check_every());
  TORCH_CHECK(!o.label().empty(), what, ": label must not be empty");
  check_lr_schedule(o.schedule());
}

Trainer::Trainer(torch::nn::Module& model, torch::optim::Optimizer& optimizer, TrainerOptions options)
    : model_(model),
      optimizer_(optimizer),
      sharded_optimizer_(dynamic_cast<ShardedAdamW*>(&optimizer)),
      options_(std::move(options)),
      parameters_(model.parameters()) {
  check_trainer_options(options_);
  TORCH_CHECK(options_.data_parallel() == nullptr || !options_.data_parallel()->shards_gradients() ||
                  sharded_optimizer_ != nullptr,
              "bittorch::train::Trainer: the data parallelism shards the gradients (gradient_owner): the optimizer "
              "must be a ShardedAdamW, which updates the parameters a rank owns");
  TORCH_CHECK(!options_.cuda_graph() || options_.device().is_cuda(),
              "bittorch::train::Trainer: cuda_graph needs a CUDA device, not ", options_.device());
  TORCH_CHECK(!options_.cuda_graph() || options_.data_parallel() == nullptr,
              "bittorch::train::Trainer: cuda_graph does not yet work with data parallelism (its collectives and "
              "hooks run outside a recorded step)");
  scheduler_ = std::make_unique<WarmupDecayLR>(optimizer_, options_.schedule());
  set_settings(nlohmann::json::object());
}

Trainer::~Trainer() = default;

void Trainer::set_settings(nlohmann::json settings) {
  TORCH_CHECK(settings.is_object() && !settings.contains("trainer"),
              "bittorch::train::Trainer::set_settings: expected a JSON object without a 'trainer' field");
  settings_ = std::move(settings);
  settings_["trainer"] = {{"steps_per_epoch", options_.steps_per_epoch()},
                          {"accumulation_steps", options_.accumulation_steps()},
                          {"max_grad_norm", options_.max_grad_norm()},
                          {"schedule", schedule_json(options_.schedule())}};
}

CheckpointMetadata Trainer::resume(const std::string& path) {
  auto stored = load_checkpoint(path, model_, &optimizer_, describe_model(model_, options_.label()), options_.device(),
                                &settings_);
  // A whole state loaded: a sharded optimizer keeps its own part.
  if (sharded_optimizer_ != nullptr) sharded_optimizer_->drop_unowned_state();
  // The loaded tensors may not be the ones a recorded step reads: record it again.
  graph_.reset();
  eager_steps_ = 0;
  epochs_done_ = stored.epochs_done;
  steps_done_ = stored.steps_done;
  history_ = stored.metrics;
  scheduler_->set_position(steps_done_);
  return stored;
}

int64_t Trainer::epochs() const {
  return ceil_div(options_.total_steps(), options_.steps_per_epoch());
}

bool Trainer::reports() const {
  return options_.data_parallel() == nullptr || options_.data_parallel()->rank() == 0;
}

double Trainer::current_lr() const {
  return optimizer_.param_groups().empty() ? 0.0 : optimizer_.param_groups().front().options().get_lr();
}

const nlohmann::json& Trainer::fit(const TrainerHooks& hooks) {
  TORCH_CHECK(hooks.step, "bittorch::train::Trainer::fit: hooks.step is not set");
  TORCH_CHECK(!options_.cuda_graph() || hooks.load_batch,
              "bittorch::train::Trainer::fit: cuda_graph needs hooks.load_batch, to write each step's batch where the "
              "recorded step reads it");
  const int64_t last_epoch =
      options_.stop_after_epoch() > 0 ? std::min(epochs(), options_.stop_after_epoch()) : epochs();
  if (epochs_done_ < last_epoch && reports()) {
    spdlog::info("{}: training epochs {}-{} of {} ({} steps), lr {} on {}", options_.label(), epochs_done_ + 1,
                 last_epoch, epochs(), options_.total_steps(), current_lr(), options_.device().str());
  }
  for (int64_t epoch = epochs_done_ + 1; epoch <= last_epoch; ++epoch) {
    nlohmann::json record = train_epoch(epoch, hooks);
    nlohmann::json fields = nlohmann::json::object();
    if (hooks.evaluate) {
      model_.eval();
      torch::NoGradGuard no_grad;
      nn::KeepQuantizedWeights keep;  // ternary layers quantize once per evaluation
      fields = hooks.evaluate();
      TORCH_CHECK(fields.is_object(), "bittorch::train::Trainer: hooks.evaluate must return a JSON object");
      record.update(fields);
    }
    if (reports()) {
      spdlog::info("{} epoch {}/{}: train loss {:.4f}{} ({:.2f} s, {:.0f} {}/s)", options_.label(), epoch, epochs(),
                   record["train_loss"].get<double>(), describe_fields(fields), record["seconds"].get<double>(),
                   record[options_.unit() + "_per_second"].get<double>(), options_.unit());
    }
    history_.push_back(record);
    epochs_done_ = epoch;
    if (!options_.checkpoint_path().empty()) {
      // A sharded optimizer's state is gathered on rank 0 (every rank takes part) to be saved whole.
      if (sharded_optimizer_ != nullptr) sharded_optimizer_->gather_state();
      if (reports()) {
        save_checkpoint(options_.checkpoint_path(), model_, &optimizer_,
                        {describe_model(model_, options_.label()), settings_, epochs_done_, steps_done_, history_});
      }
      if (sharded_optimizer_ != nullptr) sharded_optimizer_->drop_unowned_state();
    }
    if (hooks.epoch_end) hooks.epoch_end(record);
  }
  if (last_epoch < epochs() && epochs_done_ == last_epoch && reports()) {
    spdlog::info("{}: stopped after epoch {} of {}", options_.label(), last_epoch, epochs());
  }
  return history_;
}

int64_t Trainer::forward_backward(const StepContext& context, const TrainerHooks& hooks,
                                  const torch::Tensor& loss_sum) {
  auto* const parallel = options_.data_parallel();
  const int64_t micro_steps = options_.accumulation_steps();
  int64_t items = 0;
  // Ternary layers quantize their weights once per step, not once per micro-batch; the scope
  // ends before the optimizer changes them.
  nn::KeepQuantizedWeights keep_for_the_step;
  for (int64_t micro = 0; micro < micro_steps; ++micro) {
    StepContext micro_context = context;
    micro_context.micro_step = micro;
    const StepOutput output = hooks.step(micro_context);
    TORCH_CHECK(output.loss.defined() && output.loss.numel() == 1,
                "bittorch::train::Trainer: hooks.step must return a one-element loss");
    const auto loss = micro_steps == 1 ? output.loss : output.loss / static_cast<double>(micro_steps);
    if (parallel != nullptr) {
      parallel->backward(loss, /*sync=*/micro == micro_steps - 1);
    } else {
      loss.backward();
    }
    loss_sum.add_(output.loss.detach().to(torch::kDouble).reshape({}) / static_cast<double>(micro_steps));
    items += output.items;
  }
  return items;
}

int64_t Trainer::run_step(const StepContext& context, const TrainerHooks& hooks, const torch::Tensor& step_loss) {
  if (hooks.load_batch) {
    for (int64_t micro = 0; micro < options_.accumulation_steps(); ++micro) {
      StepContext micro_context = context;
      micro_context.micro_step = micro;
      hooks.load_batch(micro_context);
    }
  }
  if (!options_.cuda_graph() || (graph_ == nullptr && eager_steps_ < kEagerStepsBeforeGraph)) {
    ++eager_steps_;
    optimizer_.zero_grad();
    return forward_backward(context, hooks, step_loss);
  }
  if (graph_ == nullptr) {
    // The gradients set to none: the recorded backward makes them in the graph's memory, where
    // each replay writes them whole, so that no step needs them zeroed again.
    optimizer_.zero_grad();
    graph_loss_ = torch::zeros_like(step_loss);  // where each replay sums its loss
    graph_ = nn::detail::capture_cuda_graph(
        options_.device(),
        [&] {
          graph_loss_.zero_();
          graph_items_ = forward_backward(context, hooks, graph_loss_);
        },
        /*release_cached_memory=*/true);
    TORCH_CHECK(graph_ != nullptr, "bittorch::train::Trainer: cuda_graph needs a build with CUDA kernels");
    if (reports()) {
      spdlog::debug("{}: the step recorded in a CUDA graph of {} nodes after {} eager steps", options_.label(),
                    graph_->nodes(), eager_steps_);
    }
  }
  graph_->replay();
  step_loss.copy_(graph_loss_);
  return graph_items_;
}

nlohmann::json Trainer::train_epoch(int64_t epoch, const TrainerHooks& hooks) {
  const int64_t steps = std::min(options_.steps_per_epoch(), options_.total_steps() - steps_done_);
  model_.train();
  EpochProgress progress(fmt::format("{} epoch {}/{}", options_.label(), epoch, epochs()), steps, options_.unit(),
                         reports() ? options_.progress() : ProgressStyle::None);
  auto* const parallel = options_.data_parallel();
  synchronize(options_.device());
  const auto start = std::chrono::steady_clock::now();
  // Each step's loss, kept on the device: reading a loss waits for the GPU, so their mean is
  // read only every loss_check_every steps, and the losses themselves at the end of the epoch.
  auto step_losses = torch::zeros({steps}, torch::TensorOptions().dtype(torch::kDouble).device(options_.device()));
  int64_t items = 0;
  for (int64_t step = 0; step < steps; ++step) {
    scheduler_->step();  // the rate of step steps_done_
    items += run_step({epoch, steps_done_, step, 0}, hooks, step_losses.select(0, step));
    if (options_.max_grad_norm() > 0) clip_gradients(parameters_, options_.max_grad_norm(), parallel);
    optimizer_.step();
    ++steps_done_;
    if ((step + 1) % options_.loss_check_every() == 0 || step + 1 == steps) {
      // Every rank checks at the same steps, so that all of them stop together.
      double mean_loss = step_losses.narrow(0, 0, step + 1).mean().item<double>();
      if (parallel != nullptr) mean_loss = parallel->mean_over_ranks(mean_loss);
      TORCH_CHECK(std::isfinite(mean_loss), options_.label(), " epoch ", epoch, ": the training loss became ",
                  mean_loss, " by step ", step + 1, " of the epoch: training diverged (learning rate ", current_lr(),
                  "; ", options_.divergence_hint(), ")");
      progress.update(step + 1, items * (parallel != nullptr ? parallel->world_size() : 1), mean_loss);
    }
  }
  synchronize(options_.device());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish();
  const auto losses = step_losses.cpu();
  double train_loss = steps > 0 ? losses.mean().item<double>() : 0.0;
  double all_items = static_cast<double>(items);
  if (parallel != nullptr) {
    train_loss = parallel->mean_over_ranks(train_loss);
    all_items = parallel->sum_over_ranks(all_items);
  }
  return {{"epoch", epoch},
          {"steps", steps_done_},
          {"train_loss", train_loss},
          {"step_losses", std::vector<double>(losses.data_ptr<double>(), losses.data_ptr<double>() + steps)},
          {"seconds", seconds},
          {options_.unit() + "_per_second", all_items / std::max(seconds, 1e-9)}};
}

}  // namespace bittorch::train
