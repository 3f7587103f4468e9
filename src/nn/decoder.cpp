#include <bittorch/nn/decoder.h>

#include "nn/captured_step.h"

#include <bittorch/nn/fused_projections.h>

#include <ATen/ATen.h>
#include <torch/utils.h>

namespace bittorch::nn {

Decoder::Decoder(TransformerLMImpl& model, int64_t batch, at::ScalarType cache_dtype, bool cuda_graph)
    : model_(model), lengths_(static_cast<size_t>(std::max<int64_t>(batch, 0)), 0) {
  TORCH_CHECK(batch >= 1, "Decoder: batch must be >= 1, not ", batch);
  TORCH_CHECK(at::isFloatingType(cache_dtype), "Decoder: the cache dtype must be floating point, not ", cache_dtype);
  const auto device = model.embedding->weight.device();
  cache_ = model.make_cache(batch, at::TensorOptions().device(device).dtype(cache_dtype));
  fused_ = model.decode_step_supported(device);
  fuse_projections(model);  // q, k and v (gate and up) as one layer each
  cuda_graph_ = cuda_graph && device.is_cuda() && fused_;
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(device);
  tokens_ = at::zeros({batch, 1}, long_options);
  positions_ = at::zeros({batch}, long_options);
}

Decoder::~Decoder() = default;

int64_t Decoder::length(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < batch(), "Decoder: sequence ", index, " is outside the batch of ", batch());
  return lengths_[static_cast<size_t>(index)];
}

int64_t Decoder::graph_nodes() const {
  return graph_ != nullptr ? graph_->nodes() : 0;
}

KVCache Decoder::sequence_cache(int64_t index) const {
  KVCache slot;  // views of the sequence's rows: what forward writes lands in the batch's cache
  for (size_t i = 0; i < cache_.keys.size(); ++i) {
    slot.keys.push_back(cache_.keys[i].narrow(0, index, 1));
    slot.values.push_back(cache_.values[i].narrow(0, index, 1));
  }
  slot.length = lengths_[static_cast<size_t>(index)];
  return slot;
}

at::Tensor Decoder::prefill(int64_t index, const at::Tensor& tokens) {
  length(index);  // checks the index
  const int64_t context = model_.options.context();
  TORCH_CHECK(tokens.dim() == 1 && tokens.scalar_type() == at::kLong && tokens.numel() <= context,
              "Decoder::prefill: expected int64 tokens [T] with T <= the context of ", context, ", got ",
              tokens.scalar_type(), " ", tokens.sizes());
  const torch::NoGradGuard no_grad;
  const auto count = tokens.numel();
  lengths_[static_cast<size_t>(index)] = 0;
  at::Tensor logits;
  if (count > 0) {
    auto slot = sequence_cache(index);
    logits = model_.forward(tokens.to(cache_.keys.front().device()).unsqueeze(0), &slot).select(1, -1).squeeze(0);
  }
  lengths_[static_cast<size_t>(index)] = count;
  positions_.narrow(0, index, 1).fill_(count);
  return logits;
}

void Decoder::fused_step() {
  logits_ = model_.decode_step(tokens_, positions_, cache_).squeeze(1);
  positions_.add_(1);
  if (sampler_) sampled_ = sampler_(logits_);
}

void Decoder::set_sampler(std::function<at::Tensor(const at::Tensor& logits)> sampler, at::Generator generator) {
  TORCH_CHECK(steps_ == 0, "Decoder::set_sampler: set it before the first step (", steps_, " taken)");
  TORCH_CHECK(sampler, "Decoder::set_sampler: the sampler is empty");
  sampler_ = std::move(sampler);
  sampler_generator_ = std::move(generator);
}

const at::Tensor& Decoder::sampled() const {
  TORCH_CHECK(sampler_ && sampled_.defined(),
              "Decoder::sampled: ", sampler_ ? "no step has run yet" : "no sampler is set (set_sampler)");
  return sampled_;
}

at::Tensor Decoder::step(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 1 && tokens.numel() == batch() && tokens.scalar_type() == at::kLong &&
                  tokens.device() == tokens_.device(),
              "Decoder::step: expected int64 tokens [", batch(), "] on ", tokens_.device(), ", got ",
              tokens.scalar_type(), " ", tokens.sizes(), " on ", tokens.device());
  for (int64_t i = 0; i < batch(); ++i) {
    TORCH_CHECK(lengths_[static_cast<size_t>(i)] < model_.options.context(), "Decoder::step: sequence ", i,
                " fills the context of ", model_.options.context(), ": prefill it with a shorter window first");
  }
  const torch::NoGradGuard no_grad;
  at::Tensor logits;
  if (fused_) {
    tokens_.copy_(tokens.unsqueeze(1));
    if (graph_ == nullptr && cuda_graph_ && steps_ > 0) {
      // The first step ran eagerly: the tables, workspaces and kept weights it made exist.
      graph_ = detail::capture_cuda_graph(
          tokens_.device(), [this] { fused_step(); }, /*release_cached_memory=*/false,
          sampler_ ? std::vector<at::Generator>{sampler_generator_} : std::vector<at::Generator>{});
    }
    if (graph_ != nullptr) {
      graph_->replay();
    } else {
      fused_step();
    }
    logits = logits_;
  } else {
    std::vector<at::Tensor> each;
    for (int64_t i = 0; i < batch(); ++i) {
      auto slot = sequence_cache(i);
      each.push_back(model_.forward(tokens.narrow(0, i, 1).unsqueeze(1), &slot).view({-1}));
    }
    logits = at::stack(each);
    if (sampler_) sampled_ = sampler_(logits);
  }
  for (auto& length : lengths_) ++length;
  ++steps_;
  return logits;
}

}  // namespace bittorch::nn
