#include <bittorch/nn/decoder.h>
#include <bittorch/nn/generation.h>
#include <bittorch/ops/sample_tokens.h>

#include "nn/autocast_cache_off.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/utils.h>

#include <algorithm>
#include <mutex>

namespace bittorch::nn {
namespace {

// A generator of its own on `device`, seeded.
at::Generator seeded_generator(c10::Device device, uint64_t seed) {
  auto device_default = at::globalContext().defaultGenerator(device);
  at::Generator generator;
  {
    const std::lock_guard<std::mutex> lock(device_default.mutex());
    generator = device_default.clone();
  }
  generator.set_current_seed(seed);
  return generator;
}

// The last `count` tokens of `tokens`.
at::Tensor last_tokens(const std::vector<int64_t>& tokens, int64_t count) {
  return at::tensor(std::vector<int64_t>(tokens.end() - count, tokens.end()), at::kLong);
}

}  // namespace

std::vector<at::Tensor> generate(TransformerLMImpl& model, const std::vector<at::Tensor>& prompts,
                                 const GenerateOptions& options) {
  TORCH_CHECK(!prompts.empty(), "generate: expected at least one prompt");
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& prompt = prompts[i];
    TORCH_CHECK(prompt.dim() == 1 && prompt.numel() >= 1 && prompt.scalar_type() == at::kLong,
                "generate: expected non-empty int64 prompts [T], got ", prompt.scalar_type(), " ", prompt.sizes(),
                " for prompt ", i);
  }
  TORCH_CHECK(options.max_new_tokens() >= 0, "generate: max_new_tokens must be >= 0");
  TORCH_CHECK(options.temperature() >= 0, "generate: temperature must be >= 0, not ", options.temperature());
  TORCH_CHECK(options.top_k() >= 0, "generate: top_k must be >= 0, not ", options.top_k());
  const auto batch = static_cast<int64_t>(prompts.size());
  const int64_t new_tokens = options.max_new_tokens();
  if (new_tokens == 0) return std::vector<at::Tensor>(prompts.size(), at::empty({0}, at::kLong));

  const torch::NoGradGuard no_grad;
  const detail::AutocastCacheOff autocast_cache_off;
  const auto device = model.embedding->weight.device();
  const auto dtype = at::autocast::is_autocast_enabled(device.type()) ? at::autocast::get_autocast_dtype(device.type())
                                                                      : model.embedding->weight.scalar_type();
  const int64_t context = model.options.context();
  Decoder decoder(model, batch, dtype, options.cuda_graph());
  auto generator = seeded_generator(device, options.seed());

  std::vector<std::vector<int64_t>> prompt_tokens;
  std::vector<at::Tensor> last_logits;
  for (int64_t i = 0; i < batch; ++i) {
    const auto prompt = prompts[static_cast<size_t>(i)].to(at::kCPU).contiguous();
    prompt_tokens.emplace_back(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
    last_logits.push_back(decoder.prefill(i, last_tokens(prompt_tokens.back(), std::min(prompt.numel(), context))));
  }
  auto generated = at::empty({batch, new_tokens}, at::TensorOptions().dtype(at::kLong).device(device));
  // A sequence that fills the context goes on from its last half, the newest token included:
  // its cache refilled with the `keep` tokens before that one.
  const int64_t keep = std::max<int64_t>(1, context / 2) - 1;
  // Every token after the first is sampled inside the decoder's step (in its CUDA graph):
  // the same draws from the generator, in the same order, as sampling after each step.
  decoder.set_sampler(
      [generator, temperature = options.temperature(), top_k = options.top_k()](const at::Tensor& step_logits) mutable {
        return ops::sample_tokens(step_logits, temperature, top_k, generator);
      },
      generator);
  auto next = ops::sample_tokens(at::stack(last_logits), options.temperature(), options.top_k(), generator);
  for (int64_t step = 0; step < new_tokens; ++step) {
    generated.select(1, step).copy_(next);
    if (step + 1 == new_tokens) break;
    // (The tokens so far are read back from the device: once per half context.)
    for (int64_t i = 0; i < batch; ++i) {
      if (decoder.length(i) < context) continue;
      const auto so_far = generated.select(0, i).narrow(0, 0, step).cpu();
      auto tokens = prompt_tokens[static_cast<size_t>(i)];
      tokens.insert(tokens.end(), so_far.data_ptr<int64_t>(), so_far.data_ptr<int64_t>() + so_far.numel());
      decoder.prefill(i, last_tokens(tokens, keep));
    }
    decoder.step(next);
    next = decoder.sampled();
  }
  const auto on_host = generated.cpu();
  std::vector<at::Tensor> continuations;
  for (int64_t i = 0; i < batch; ++i) continuations.push_back(on_host.select(0, i).clone());
  return continuations;
}

at::Tensor generate(TransformerLMImpl& model, const at::Tensor& prompt, const GenerateOptions& options) {
  return generate(model, std::vector<at::Tensor>{prompt}, options).front();
}

}  // namespace bittorch::nn
