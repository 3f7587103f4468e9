#include "common/training_run.h"

#include <spdlog/spdlog.h>

namespace bittorch::apps {

TrainingRun::TrainingRun(torch::nn::Module& model, torch::optim::Optimizer& optimizer, train::TrainerOptions options,
                         const ProcessRanks& ranks, train::MetricsLog& metrics, nlohmann::json entry,
                         const distributed::DataParallelOptions& parallel_options)
    : ranks_(ranks), metrics_(metrics), entry_(std::move(entry)), metrics_index_(metrics.run_count()) {
  if (ranks.group) parallel_ = std::make_unique<distributed::DataParallel>(model, ranks.group, parallel_options);
  trainer_ = std::make_unique<train::Trainer>(model, optimizer, options.data_parallel(parallel_.get()));
}

void TrainingRun::begin(nlohmann::json settings, const std::string& resume_path) {
  trainer_->set_settings(std::move(settings));
  if (resume_path.empty()) return;
  const auto stored = trainer_->resume(resume_path);
  spdlog::info("{}: resuming {} after epoch {} of {} (step {})", trainer_->options().label(), resume_path,
               stored.epochs_done, trainer_->epochs(), stored.steps_done);
}

bool TrainingRun::fit(train::TrainerHooks hooks) {
  const auto epoch_end = hooks.epoch_end;
  hooks.epoch_end = [&, epoch_end](const nlohmann::json& record) {
    if (epoch_end) epoch_end(record);
    report();
  };
  trainer_->fit(hooks);
  if (!ranks_.leader()) return false;
  if (trainer_->epochs_done() < trainer_->epochs()) {
    spdlog::info("{}: continue with --resume {}", trainer_->options().label(), trainer_->options().checkpoint_path());
  }
  return true;
}

void TrainingRun::report() {
  metrics_.set_run(metrics_index_, entry_);
}

}  // namespace bittorch::apps
