// bittorch::decode_attention on CUDA against the reference from the formulas (long contexts
// and every load width), an out-of-range position (NaN, nothing written), the step captured
// in a CUDA graph replayed at positions the position tensor holds, and the shapes the kernel
// does not take (a language model decodes them through attention over its cache instead).

#include "ops/decode_attention_check.h"
#include "reference.h"

#include <ATen/cuda/CUDAGraph.h>
#include <bittorch/bittorch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

namespace {

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

TEST(DecodeAttentionCuda, MatchesTheReference) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(71);
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const auto& c : bittorch::testing::decode_attention_cases(/*long_contexts=*/true)) {
      bittorch::testing::expect_decode_attention_matches_reference(torch::kCUDA, dtype, c);
    }
  }
}

TEST(DecodeAttentionCuda, OutOfRangePositionGivesNanAndWritesNothing) {
  SKIP_WITHOUT_CUDA();
  const auto options = torch::TensorOptions().device(torch::kCUDA);
  const auto q = torch::randn({1, 2, 8}, options);
  auto keys = torch::randn({1, 2, 4, 8}, options), values = torch::randn({1, 2, 4, 8}, options);
  const auto keys_before = keys.clone(), values_before = values.clone();
  const auto [cos, sin] = bittorch::testing::formula_rotary_tables(4, 8, torch::kFloat);
  for (const int64_t position : {-1, 4}) {
    const auto out = bittorch::ops::decode_attention(
        q, q, q, keys, values, torch::full({1}, position, options.dtype(torch::kLong)), cos.cuda(), sin.cuda());
    EXPECT_TRUE(out.isnan().all().item<bool>()) << "position " << position;
    EXPECT_TRUE(torch::equal(keys, keys_before) && torch::equal(values, values_before)) << "position " << position;
  }
}

TEST(DecodeAttentionCuda, ACapturedGraphReplaysAtThePositionTensorsValue) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(72);
  const int64_t context = 24;
  const auto options = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  auto q = torch::randn({1, 3, 64}, options), k = torch::randn({1, 3, 64}, options),
       v = torch::randn({1, 3, 64}, options);
  auto keys = torch::zeros({1, 3, context, 64}, options), values = torch::zeros_like(keys);
  const auto [cos_cpu, sin_cpu] = bittorch::testing::formula_rotary_tables(context, 64, torch::kFloat);
  const auto cos = cos_cpu.cuda(), sin = sin_cpu.cuda();
  auto position = torch::zeros({1}, options.dtype(torch::kLong));
  at::Tensor out;
  {
    c10::cuda::CUDAStreamGuard stream(c10::cuda::getStreamFromPool());
    out = bittorch::ops::decode_attention(q, k, v, keys, values, position, cos, sin);  // warm-up
    at::cuda::CUDAGraph graph;
    graph.capture_begin();
    out = bittorch::ops::decode_attention(q, k, v, keys, values, position, cos, sin);
    graph.capture_end();
    for (int64_t p = 0; p < context; ++p) {
      q.normal_(), k.normal_(), v.normal_();
      position.fill_(p);
      const auto keys_before = keys.clone(), values_before = values.clone();
      graph.replay();
      const auto ref = bittorch::testing::reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), keys_before.cpu(),
                                                                     values_before.cpu(), p,
                                                                     bittorch::testing::kRopeBase, torch::kBFloat16);
      const double error = (out.cpu().to(torch::kDouble) - ref.output).abs().max().item<double>();
      EXPECT_LE(error, 3e-2 * std::max(1.0, ref.output.abs().max().item<double>())) << "position " << p;
    }
  }
}

TEST(DecodeAttentionCuda, ShapesBeyondTheKernelAreRefusedOrDecodedWithoutIt) {
  SKIP_WITHOUT_CUDA();
  namespace bn = bittorch::nn;
  using bittorch::ops::decode_attention_supports;
  EXPECT_TRUE(decode_attention_supports(torch::kCPU, 4096, 1 << 20));
  EXPECT_TRUE(decode_attention_supports(torch::kCUDA, 64, 1024));
  EXPECT_TRUE(decode_attention_supports(torch::kCUDA, 512, 8192));
  EXPECT_FALSE(decode_attention_supports(torch::kCUDA, 1024, 64));
  EXPECT_FALSE(decode_attention_supports(torch::kCUDA, 64, 16384));
  // A 512-wide head in caches whose alignment allows no vector loads: more vectors per row
  // than threads, refused (it once summed no value rows).
  {
    const auto options = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
    const auto q = torch::randn({1, 1, 512}, options);
    auto storage = torch::zeros({2 * 4 * 512 + 1}, options);
    auto keys = storage.narrow(0, 1, 4 * 512).view({1, 1, 4, 512});
    auto values = storage.narrow(0, 1 + 4 * 512, 4 * 512).view({1, 1, 4, 512});
    const auto [cos, sin] = bittorch::testing::formula_rotary_tables(4, 512, torch::kFloat);
    const auto position = torch::zeros({1}, options.dtype(torch::kLong));
    EXPECT_THROW(bittorch::ops::decode_attention(q, q, q, keys, values, position, cos.cuda(), sin.cuda()), c10::Error);
  }
  // Models whose heads or context the kernel does not take, and tiny contexts and one head:
  // token by token through the cache equals the whole sequence at once.
  struct Shape {
    int64_t width, heads, context;
  };
  for (const auto shape : {Shape{1024, 1, 16}, Shape{64, 2, 10240}, Shape{64, 1, 3}, Shape{64, 4, 1}}) {
    torch::manual_seed(73);
    bn::TransformerLM model(bn::TransformerOptions()
                                .vocab_size(11)
                                .width(shape.width)
                                .heads(shape.heads)
                                .layers(2)
                                .context(shape.context)
                                .mlp_ratio(2));
    model->to(torch::kCUDA);
    const torch::NoGradGuard no_grad;
    const int64_t length = std::min<int64_t>(shape.context, 6);
    const auto tokens =
        torch::randint(0, 11, {1, length}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
    const auto whole = model->forward(tokens);
    auto cache = model->make_cache(1, torch::TensorOptions().device(torch::kCUDA));
    std::vector<at::Tensor> steps;
    for (int64_t i = 0; i < length; ++i) steps.push_back(model->forward(tokens.narrow(1, i, 1), &cache));
    EXPECT_TRUE(torch::allclose(torch::cat(steps, 1), whole, 1e-3, 1e-4))
        << "width " << shape.width << ", heads " << shape.heads << ", context " << shape.context;
  }
}

}  // namespace
