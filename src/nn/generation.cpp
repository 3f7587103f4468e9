#include <bittorch/nn/generation.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/utils.h>

#include <limits>
#include <vector>

namespace bittorch::nn {

int64_t sample_token(const at::Tensor& logits, double temperature, int64_t top_k, at::Generator& generator) {
  TORCH_CHECK(logits.dim() == 1 && logits.numel() >= 1, "sample_token: expected logits [vocab], got ", logits.sizes());
  TORCH_CHECK(temperature >= 0, "sample_token: temperature must be >= 0, not ", temperature);
  TORCH_CHECK(top_k >= 0, "sample_token: top_k must be >= 0, not ", top_k);
  auto scores = logits.detach().to(at::kCPU, at::kFloat);
  if (temperature == 0) return scores.argmax().item<int64_t>();
  scores = scores / temperature;
  if (top_k > 0 && top_k < scores.numel()) {
    const auto kth = std::get<0>(scores.topk(top_k)).min();
    scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
  }
  return at::multinomial(scores.softmax(0), 1, false, generator).item<int64_t>();
}

at::Tensor generate(TransformerLMImpl& model, const at::Tensor& prompt, const GenerateOptions& options) {
  TORCH_CHECK(prompt.dim() == 1 && prompt.numel() >= 1 && prompt.scalar_type() == at::kLong,
              "generate: expected a non-empty int64 prompt [T], got ", prompt.scalar_type(), " ", prompt.sizes());
  TORCH_CHECK(options.max_new_tokens() >= 0, "generate: max_new_tokens must be >= 0");
  torch::NoGradGuard no_grad;
  KeepQuantizedWeights keep;  // ternary layers quantize once, not once per token
  const auto device = model.embedding->weight.device();
  const auto device_type = device.type();
  const auto dtype = at::autocast::is_autocast_enabled(device_type) ? at::autocast::get_autocast_dtype(device_type)
                                                                    : model.embedding->weight.scalar_type();
  auto cache = model.make_cache(1, at::TensorOptions().device(device).dtype(dtype));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  const int64_t context = model.options.context();
  std::vector<int64_t> tokens(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
  // Runs the last `count` tokens through the model from an empty cache.
  const auto refill = [&](int64_t count) {
    cache.length = 0;
    const auto window = at::tensor(std::vector<int64_t>(tokens.end() - count, tokens.end())).to(device);
    return model.forward(window.unsqueeze(0), &cache).select(1, -1).squeeze(0);
  };
  auto logits = refill(std::min<int64_t>(static_cast<int64_t>(tokens.size()), context));
  std::vector<int64_t> generated;
  for (int64_t i = 0; i < options.max_new_tokens(); ++i) {
    const int64_t next = sample_token(logits, options.temperature(), options.top_k(), generator);
    generated.push_back(next);
    tokens.push_back(next);
    if (i + 1 == options.max_new_tokens()) break;
    if (cache.length == context) {
      logits = refill(std::max<int64_t>(1, context / 2));
    } else {
      logits = model.forward(at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device)), &cache)
                   .select(1, -1)
                   .squeeze(0);
    }
  }
  return at::tensor(generated, at::kLong);
}

}  // namespace bittorch::nn
