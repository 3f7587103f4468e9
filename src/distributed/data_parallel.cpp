#include <bittorch/distributed/data_parallel.h>

#include "distributed/heartbeat.h"
#include "distributed/sharded_gradients.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>

namespace bittorch::distributed {
namespace {

// DDP's bf16_compress_hook: the bucket rounded to bfloat16 and divided by the world size,
// all-reduced, and written back in the bucket's dtype.
class Bf16CompressHook : public c10d::CppCommHookInterface<c10::intrusive_ptr<c10d::ProcessGroup>> {
 public:
  using CppCommHookInterface::CppCommHookInterface;

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    auto buffer = bucket.getBufferRef();
    std::vector<at::Tensor> tensors = {buffer.to(at::kBFloat16).div_(state_->getSize())};
    auto future = state_->allreduce(tensors)->getFuture();
    return future->then(
        [buffer](c10::ivalue::Future& done) {
          const auto reduced = done.value().toTensorVector()[0];
          buffer.copy_(reduced);
          return c10::IValue(buffer);
        },
        future->elementType());
  }
};

}  // namespace

DataParallel::DataParallel(torch::nn::Module& module, c10::intrusive_ptr<c10d::ProcessGroup> group,
                           const DataParallelOptions& options)
    : group_(std::move(group)) {
  TORCH_CHECK(group_, "DataParallel: no process group");
  TORCH_CHECK(options.bucket_cap_mb() > 0, "DataParallel: bucket_cap_mb must be > 0, not ", options.bucket_cap_mb());
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    parameters_.push_back(item.value());
    names.push_back(item.key());
  }
  TORCH_CHECK(!parameters_.empty(), "DataParallel: the module has no parameters that require gradients");
  // Rank 0's initial state everywhere.
  {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> state;
    for (const auto& parameter : module.parameters()) state.push_back(parameter.detach());
    for (const auto& buffer : module.buffers()) state.push_back(buffer.detach());
    detail::broadcast_from(group_, state, 0);
  }
  const auto cap = static_cast<int64_t>(options.bucket_cap_mb() * 1024 * 1024);
  if (options.gradient_owner()) {
    sharded_ = std::make_unique<detail::ShardedGradients>(parameters_, std::move(names), options.gradient_owner(),
                                                          group_, cap, options.bf16_gradients());
    return;
  }
  const int64_t first_cap = std::min<int64_t>(cap, 1024 * 1024);
  auto [buckets, limits] =
      c10d::compute_bucket_assignment_by_size(parameters_, {static_cast<size_t>(first_cap), static_cast<size_t>(cap)});
  // Gradients become ready roughly in reverse order of the parameters: the buckets too.
  std::reverse(buckets.begin(), buckets.end());
  reducer_ = std::make_shared<c10d::Reducer>(
      parameters_, std::move(buckets), group_, std::vector<bool>(parameters_.size(), false), cap,
      /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false, std::unordered_map<size_t, std::string>{},
      first_cap,
      /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false, std::vector<int64_t>{});
  if (options.bf16_gradients()) reducer_->register_comm_hook(std::make_unique<Bf16CompressHook>(group_));
  logger_ = std::make_shared<c10d::Logger>(reducer_);
  reducer_->set_logger(logger_);
}

DataParallel::~DataParallel() = default;

void DataParallel::backward(const at::Tensor& loss, bool sync) {
  if (sharded_) {
    sharded_->backward(loss, sync);
    return;
  }
  if (sync) {
    // Reads the previous iteration's timings if the Reducer sampled it, as DDP's forward does:
    // at those steps (the first ten, then every hundredth) it waits for that iteration's CUDA
    // events, which have mostly completed by now.
    logger_->set_runtime_stats_and_log();
    reducer_->prepare_for_forward();
    reducer_->prepare_for_backward({loss});
  }
  detail::naming_stopped_ranks(*group_, [&] { loss.backward(); });
}

std::optional<CommunicationTimes> DataParallel::last_communication_times() {
  if (!logger_) return std::nullopt;
  logger_->set_runtime_stats_and_log();  // the latest iteration, if sampled (else a no-op)
  const auto data = logger_->get_ddp_logging_data();
  const auto field = [&](const char* name) {
    const auto found = data.ints_map.find(name);
    return found == data.ints_map.end() ? int64_t{-1} : found->second;
  };
  constexpr double kNanosecondsPerMs = 1e6;
  if (field("iteration") <= 0 || field("backward_comm_time") < 0) return std::nullopt;
  return CommunicationTimes{field("iteration"), field("backward_compute_time") / kNanosecondsPerMs,
                            field("backward_comm_time") / kNanosecondsPerMs,
                            field("backward_compute_comm_overlap_time") / kNanosecondsPerMs};
}

double DataParallel::all_reduce_scalar(double value, bool mean) {
  std::vector<at::Tensor> tensors = {at::full({1}, value, at::TensorOptions().dtype(at::kDouble))};
  if (parameters_.front().is_cuda()) tensors[0] = tensors[0].to(parameters_.front().device());
  detail::naming_stopped_ranks(*group_, [&] { group_->allreduce(tensors)->wait(); });
  const double sum = tensors[0].item<double>();
  return mean ? sum / static_cast<double>(group_->getSize()) : sum;
}

at::Tensor DataParallel::sum_over_ranks(const at::Tensor& value) {
  std::vector<at::Tensor> tensors = {value.clone()};
  detail::naming_stopped_ranks(*group_, [&] { group_->allreduce(tensors)->wait(); });
  return tensors[0];
}

double DataParallel::mean_over_ranks(double value) {
  return all_reduce_scalar(value, true);
}

double DataParallel::sum_over_ranks(double value) {
  return all_reduce_scalar(value, false);
}

int64_t DataParallel::rank() const {
  return group_->getRank();
}

int64_t DataParallel::world_size() const {
  return group_->getSize();
}

at::Tensor shard_of_batch(const at::Tensor& indices, int64_t rank, int64_t ranks) {
  TORCH_CHECK(indices.dim() == 1 && indices.numel() >= 1, "shard_of_batch: expected a non-empty 1-D batch, got ",
              indices.sizes());
  TORCH_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "shard_of_batch: rank ", rank, " of ", ranks);
  const int64_t n = indices.numel(), part = (n + ranks - 1) / ranks;
  auto padded = indices;
  while (padded.numel() < part * ranks) {
    padded = at::cat({padded, indices.narrow(0, 0, std::min(n, part * ranks - padded.numel()))});
  }
  return padded.narrow(0, rank * part, part);
}

void average_gradients_per_parameter(torch::nn::Module& module, c10d::ProcessGroup& group) {
  for (auto& parameter : module.parameters()) {
    if (!parameter.grad().defined()) continue;
    std::vector<at::Tensor> gradient = {parameter.grad()};
    detail::naming_stopped_ranks(group, [&] { group.allreduce(gradient)->wait(); });
    parameter.grad().div_(group.getSize());
  }
}

}  // namespace bittorch::distributed
