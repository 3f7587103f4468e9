// The fused training ops on CUDA: add_rms_norm's kernels against the CPU kernel (itself tested
// against the formulas) over widths below, at and above the block's 256 threads and mixed
// dtypes; squared_relu's against the CPU's on strided inputs; linear_cross_entropy under BF16
// autocast against the CPU in float64; rotary_embedding and squared_relu_mlp against their
// formulas; squared_relu_quantized against the CPU; a language model with fused ops against
// its plain composition, its q, k and v joined against separate, and its MLP as one op (or,
// with 8-bit activations, quantized in the activation) against the plain one under autocast.

#include "ops/rotary_embedding_check.h"
#include "ops/squared_relu_mlp_check.h"

#include <ATen/autocast_mode.h>
#include <bittorch/bittorch.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

namespace {

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

double max_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.cpu().to(torch::kDouble) - b.cpu().to(torch::kDouble)).abs().max().item<double>();
}

// The model's loss under BF16 autocast, then every parameter's gradient.
std::vector<torch::Tensor> autocast_loss_and_gradients(bittorch::nn::TransformerLM& model, const torch::Tensor& tokens,
                                                       const torch::Tensor& targets) {
  model->zero_grad();
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  const auto loss = model->loss(tokens, targets);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::clear_cache();
  loss.backward();
  std::vector<torch::Tensor> result = {loss.detach()};
  for (const auto& p : model->parameters()) result.push_back(p.grad().clone());
  return result;
}

// Each tensor of the same dtype as the reference's and within 2% of its largest magnitude.
void expect_within_bfloat16(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& reference,
                            const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].scalar_type(), reference[i].scalar_type()) << what << ", tensor " << i;
    EXPECT_LE(max_error(got[i], reference[i]), 2e-2 * reference[i].abs().max().item<double>() + 1e-5)
        << what << ", tensor " << i;
  }
}

TEST(FusedOpsCuda, AddRmsNormMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t rows, features;
    torch::ScalarType input, residual;
    std::optional<torch::ScalarType> output = std::nullopt;
  };
  // Past a few thousand rows each backward block takes several rows in turn (its column sums of
  // the weight's gradient); 13000 features leave the weight's gradient to the ATen expression.
  for (const auto& c :
       {Case{1, 1, torch::kFloat, torch::kFloat}, Case{7, 33, torch::kFloat, torch::kFloat},
        Case{64, 256, torch::kFloat, torch::kBFloat16}, Case{5, 1536, torch::kFloat, torch::kHalf},
        Case{9, 770, torch::kBFloat16, torch::kBFloat16}, Case{3, 300, torch::kHalf, torch::kHalf},
        Case{4, 96, torch::kBFloat16, torch::kFloat}, Case{2, 130, torch::kDouble, torch::kDouble},
        Case{3000, 96, torch::kFloat, torch::kBFloat16, torch::kBFloat16},
        Case{2500, 770, torch::kFloat, torch::kFloat, torch::kHalf}, Case{1100, 33, torch::kDouble, torch::kDouble},
        Case{40, 64, torch::kFloat, torch::kFloat, torch::kDouble}, Case{3, 13000, torch::kFloat, torch::kFloat},
        // A warp per row (float32 sums of 512, 768, 1024 or 1536 features): forward with a
        // float32, bfloat16 or float16 operand and output; backward with the gradient read as
        // float32, bfloat16 or float16 and the narrow copy in the same dtype (a narrow copy in
        // another dtype goes to the block kernel).
        Case{3000, 768, torch::kFloat, torch::kBFloat16, torch::kBFloat16},
        Case{2500, 512, torch::kFloat, torch::kFloat, torch::kHalf}, Case{33, 1536, torch::kFloat, torch::kBFloat16},
        Case{700, 1024, torch::kFloat, torch::kHalf, torch::kBFloat16},
        Case{1, 768, torch::kBFloat16, torch::kFloat}}) {
    torch::manual_seed(31);
    const auto x = torch::randn({c.rows, c.features}).to(c.input);
    const auto r = torch::randn({c.rows, c.features}).to(c.residual);
    const auto w = 1 + 0.3 * torch::randn({c.features});
    const auto sum_dtype = torch::promote_types(c.input, c.residual);
    const auto gy = torch::randn({c.rows, c.features}).to(c.output.value_or(sum_dtype)),
               gs = torch::randn({c.rows, c.features}).to(sum_dtype);
    const auto run = [&](torch::Device device) {
      auto xd = x.to(device).detach().requires_grad_(), rd = r.to(device).detach().requires_grad_(),
           wd = w.to(device).detach().requires_grad_();
      auto [output, sum] = bittorch::ops::add_rms_norm(xd, rd, wd, 1e-6, c.output);
      torch::autograd::backward({output, sum}, {gy.to(device), gs.to(device)});
      return std::vector<torch::Tensor>{output.detach(), sum.detach(), xd.grad(), rd.grad(), wd.grad()};
    };
    const auto cpu = run(torch::kCPU), cuda = run(torch::kCUDA);
    // The arithmetic's precision, and each result's own: a gradient computed in float32 and
    // rounded to a half residual's dtype may round to the neighbouring half on the other device.
    const auto tolerance_of = [](torch::ScalarType dtype) {
      return dtype == torch::kDouble ? 1e-10 : dtype == torch::kFloat ? 1e-4 : dtype == torch::kHalf ? 2e-3 : 1.6e-2;
    };
    const double computed = sum_dtype == torch::kDouble ? 1e-10 : sum_dtype == torch::kFloat ? 1e-4 : 3e-2;
    const char* names[] = {"output", "sum", "grad_input", "grad_residual", "grad_weight"};
    for (size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_EQ(cuda[i].scalar_type(), cpu[i].scalar_type()) << names[i];
      const double scale = std::max(1.0, cpu[i].abs().max().item<double>());
      const double tol = std::max(computed, tolerance_of(cpu[i].scalar_type()));
      EXPECT_LE(max_error(cuda[i], cpu[i]), tol * scale)
          << names[i] << ", " << c.rows << " x " << c.features << ", " << c10::toString(c.input) << " + "
          << c10::toString(c.residual) << " -> " << c10::toString(c.output.value_or(sum_dtype));
    }
    EXPECT_EQ(cuda[0].scalar_type(), c.output.value_or(sum_dtype));
  }
}

// The backward's narrower copy of the sum's gradient, written by the kernel, equals the cast
// of its float32 gradient, and both gradients the CPU's within the arithmetic's tolerance.
TEST(FusedOpsCuda, AddRmsNormNarrowGradientIsTheCast) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(33);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  // 200 features: the block kernel; 768: a warp per row, unless the sum starts off a 16-byte
  // boundary (offset by one element), which the block kernel takes.
  for (const auto& [rows, features, offset] :
       {std::tuple{5, 200, 0}, std::tuple{3000, 200, 0}, std::tuple{3000, 768, 0}, std::tuple{5, 768, 1}}) {
    const auto sum =
        torch::randn({rows * features + offset}, cuda).narrow(0, offset, rows * features).view({rows, features});
    const auto gs = torch::randn({rows, features}, cuda);
    const auto gy = torch::randn({rows, features}, cuda.dtype(torch::kBFloat16));
    const auto w = 1 + 0.3 * torch::randn({features}, cuda);
    const auto rstd = 1.0 / (sum.square().mean(-1) + 1e-6).sqrt();
    const auto expected = bittorch::ops::_add_rms_norm_backward(gy.cpu(), gs.cpu(), sum.cpu(), w.cpu(), rstd.cpu(),
                                                                {true, true}, std::nullopt);
    for (const auto dtype : {torch::kBFloat16, torch::kHalf, torch::kDouble}) {
      const auto [grad_sum, grad_weight, narrow] =
          bittorch::ops::_add_rms_norm_backward(gy, gs, sum, w, rstd, {true, true}, dtype);
      const auto what = c10::str(rows, " x ", features, " offset ", offset, ", ", c10::toString(dtype));
      EXPECT_EQ(narrow.scalar_type(), dtype);
      EXPECT_TRUE(torch::equal(narrow, grad_sum.to(dtype))) << what;
      EXPECT_LE(max_error(grad_sum, std::get<0>(expected)), 1e-4 * std::get<0>(expected).abs().max().item<double>())
          << what;
      EXPECT_LE(max_error(grad_weight, std::get<1>(expected)), 1e-4 * std::get<1>(expected).abs().max().item<double>())
          << what;
    }
  }
}

// The forward's warp kernel reads rows on 16-byte boundaries: a sum operand off one (a view
// starting one element in) goes to the block kernel, with the same results.
TEST(FusedOpsCuda, AddRmsNormForwardOffTheBoundary) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(35);
  const int64_t rows = 300, features = 768;
  const auto x = torch::randn({rows * features + 1}).narrow(0, 1, rows * features).view({rows, features});
  const auto r = torch::randn({rows, features}).to(torch::kBFloat16);
  const auto w = 1 + 0.3 * torch::randn({features});
  for (const int64_t offset : {0, 1}) {
    const auto xd = offset == 0 ? x.contiguous().cuda()
                                : torch::randn({rows * features + 1}, torch::kCUDA)
                                      .narrow(0, 1, rows * features)
                                      .copy_(x.reshape(-1).cuda())
                                      .view({rows, features});
    const auto [output, sum, rstd] =
        bittorch::ops::_add_rms_norm_forward(xd, r.cuda(), w.cuda(), 1e-6, torch::kBFloat16);
    const auto [cpu_output, cpu_sum, cpu_rstd] = bittorch::ops::_add_rms_norm_forward(x, r, w, 1e-6, torch::kBFloat16);
    EXPECT_LE(max_error(sum, cpu_sum), 1e-6) << "offset " << offset;
    EXPECT_LE(max_error(rstd, cpu_rstd), 1e-5 * cpu_rstd.abs().max().item<double>()) << "offset " << offset;
    EXPECT_LE(max_error(output, cpu_output), 1.6e-2 * cpu_output.abs().max().item<double>()) << "offset " << offset;
  }
}

// Under autocast the norm writes the autocast dtype (the values of the float32 output rounded
// once) and keeps a float32 sum; float64 inputs are left as they are.
TEST(FusedOpsCuda, AddRmsNormUnderAutocastWritesTheAutocastDtype) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(32);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  const auto x = torch::randn({6, 4, 96}, cuda), w = 1 + 0.3 * torch::randn({96}, cuda);
  const auto r = torch::randn({6, 4, 96}, cuda.dtype(torch::kBFloat16));
  const auto [plain_output, plain_sum] = bittorch::ops::add_rms_norm(x, r, w);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  const auto [output, sum] = bittorch::ops::add_rms_norm(x, r, w);
  const auto [double_output, double_sum] =
      bittorch::ops::add_rms_norm(x.to(torch::kDouble), r.to(torch::kDouble), w.to(torch::kDouble));
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::clear_cache();
  EXPECT_EQ(output.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(sum.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(output, plain_output.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(sum, plain_sum));
  EXPECT_EQ(double_output.scalar_type(), torch::kDouble);
  EXPECT_EQ(double_sum.scalar_type(), torch::kDouble);
}

TEST(FusedOpsCuda, RotaryEmbeddingMatchesTheFormula) {
  SKIP_WITHOUT_CUDA();
  bittorch::testing::expect_rotary_embedding_matches_the_formula(torch::kCUDA);
}

TEST(FusedOpsCuda, RotaryEmbeddingSplitMatchesTheFormula) {
  SKIP_WITHOUT_CUDA();
  bittorch::testing::expect_rotary_embedding_split_matches_the_formula(torch::kCUDA);
}

TEST(FusedOpsCuda, SquaredReluMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf, torch::kDouble}) {
    torch::manual_seed(34);
    auto random = torch::randn({37, 130});
    random[3][8] = std::numeric_limits<float>::quiet_NaN();  // NaN stays NaN on both devices
    const auto base = random.to(dtype);
    const auto g = torch::randn({37, 65}).to(dtype);
    const auto run = [&](torch::Device device) {
      auto x = base.to(device).slice(1, 0, 130, 2).detach().requires_grad_();  // strided
      const auto y = bittorch::ops::squared_relu(x);
      y.backward(g.to(device));
      return std::pair{y.detach().cpu(), x.grad().cpu()};
    };
    const auto [y_cpu, grad_cpu] = run(torch::kCPU);
    const auto [y_cuda, grad_cuda] = run(torch::kCUDA);
    // The same float32 arithmetic.
    EXPECT_TRUE(y_cpu.isnan().any().item<bool>()) << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(y_cuda.nan_to_num(-1), y_cpu.nan_to_num(-1))) << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(grad_cuda.nan_to_num(-1), grad_cpu.nan_to_num(-1))) << c10::toString(dtype);
  }
}

// squared_relu_quantized's one pass against the CPU's two ops, bit for bit: output, 8-bit
// values and row scales, every dtype and format, over the row kernel's paths (unaligned rows
// read one element at a time, a block per row, a warp per row from 4,096 rows, rows longer
// than the registers keep), with all-negative, NaN and infinite rows; the gradient as
// squared_relu's.
TEST(FusedOpsCuda, SquaredReluQuantizedMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  const std::vector<std::vector<int64_t>> shapes = {{37, 65}, {2, 33, 256}, {4100, 96}, {64, 3072}, {4096, 3072}};
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const std::string format : {"int8", "float8_e4m3"}) {
      for (const auto& shape : shapes) {
        torch::manual_seed(36);
        auto base = torch::randn(shape);
        auto rows = base.view({-1, shape.back()});
        rows[0] = -rows[0].abs() - 0.1;
        rows[1][5] = std::numeric_limits<float>::quiet_NaN();
        rows[2][3] = -std::numeric_limits<float>::infinity();
        const auto x = base.to(dtype);
        const auto g = torch::randn(shape).to(dtype);
        const auto run = [&](torch::Device device) {
          const auto input = x.to(device).detach().requires_grad_();
          auto [y, values, scale] = bittorch::ops::squared_relu_quantized(input, format);
          y.backward(g.to(device));
          return std::tuple{y.detach().cpu(), values.cpu().view(torch::kByte), scale.cpu(), input.grad().cpu()};
        };
        const auto [y_cpu, values_cpu, scale_cpu, grad_cpu] = run(torch::kCPU);
        const auto [y_cuda, values_cuda, scale_cuda, grad_cuda] = run(torch::kCUDA);
        const auto what = ::testing::Message() << c10::toString(dtype) << ", " << format << ", " << y_cpu.sizes();
        EXPECT_TRUE(torch::equal(y_cuda.nan_to_num(-1), y_cpu.nan_to_num(-1))) << what;
        EXPECT_TRUE(y_cpu.isnan().any().item<bool>()) << what;
        EXPECT_TRUE(torch::equal(values_cuda, values_cpu)) << what;
        EXPECT_TRUE(torch::equal(scale_cuda.nan_to_num(-1), scale_cpu.nan_to_num(-1))) << what;
        EXPECT_TRUE(torch::equal(grad_cuda.nan_to_num(-1), grad_cpu.nan_to_num(-1))) << what;
      }
    }
  }
}

// Shapes that take the Hopper kernels with the activation in their epilogues (bfloat16, a
// wave of 128 x 128 output tiles or more; rows, columns and K that end in a partial tile) and
// shapes that take the composed path (other dtypes, few rows, widths not multiples of 8).
TEST(FusedOpsCuda, SquaredReluMlpMatchesTheFormula) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(63);
  const std::vector<bittorch::testing::SquaredReluMlpCase> cases = {
      {{4, 600, 256}, 1024, 256}, {{2400, 200}, 1000, 200}, {{5, 12}, 20, 7}, {{3, 7, 16}, 24, 16}};
  for (const auto dtype : {torch::kBFloat16, torch::kHalf, torch::kFloat}) {
    const double tol = dtype == torch::kFloat ? 1e-5 : 3e-2;
    for (const auto& c : cases) {
      bittorch::testing::expect_squared_relu_mlp_matches_the_formula(c, dtype, torch::kCUDA, tol);
    }
  }
}

// A NaN stays NaN through the MLP: on the Hopper kernel's path (bfloat16, 2,400 rows) and the
// composed one (float32).
TEST(FusedOpsCuda, SquaredReluMlpKeepsNaN) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(65);
  for (const auto dtype : {torch::kBFloat16, torch::kFloat}) {
    bittorch::testing::expect_squared_relu_mlp_keeps_nan({{2400, 200}, 1000, 200}, dtype, torch::kCUDA);
  }
}

// A model's MLP as one squared_relu_mlp (MlpImpl::fused_activation) against its two projections
// and the squared ReLU, under BF16 autocast, BF16 and ternary: loss and every gradient, at a
// size whose MLP products take the Hopper kernels (4,096 rows of 256 -> 1,024 -> 256). With
// 8-bit activations the fused MLP's squared ReLU quantizes the down projection's rows
// (squared_relu_quantized, the warp-per-row kernel here) where the plain MLP's projection
// does: the same operations, so bit for bit.
TEST(FusedOpsCuda, SquaredReluMlpEqualsThePlainMlpUnderAutocast) {
  SKIP_WITHOUT_CUDA();
  // nullopt: torch::nn::Linear projections; else ternary ones with these activation bits.
  for (const std::optional<int64_t> ternary_bits :
       {std::optional<int64_t>(), std::optional<int64_t>(0), std::optional<int64_t>(8)}) {
    torch::manual_seed(35);
    bittorch::nn::TransformerLM model(
        bittorch::nn::TransformerOptions().vocab_size(64).width(256).heads(4).layers(2).context(256));
    if (ternary_bits) {
      bittorch::nn::convert_to_ternary(*model, bittorch::quant::QuantConfig().activation_bits(*ternary_bits),
                                       bittorch::nn::is_transformer_projection);
    }
    model->to(torch::kCUDA);
    const auto options = torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA);
    const auto tokens = torch::randint(0, 64, {16, 256}, options), targets = torch::randint(0, 64, {16, 256}, options);
    const auto run = [&](bool fused) {
      for (const auto& block : *model->blocks) {
        block->as<bittorch::nn::TransformerBlockImpl>()->mlp->fused_activation = fused;
      }
      return autocast_loss_and_gradients(model, tokens, targets);
    };
    const auto fused = run(true), plain = run(false);
    if (ternary_bits != 8) {
      expect_within_bfloat16(fused, plain, ternary_bits ? "ternary" : "bfloat16");
      continue;
    }
    const auto plain_again = run(false);
    for (size_t i = 0; i < fused.size(); ++i) {
      // Exact where the plain model repeats itself exactly (ATen's embedding backward may not).
      const bool deterministic = torch::equal(plain[i], plain_again[i]);
      EXPECT_TRUE(deterministic ? torch::equal(fused[i], plain[i]) : torch::allclose(fused[i], plain[i], 1e-5, 1e-7))
          << "8-bit activations, tensor " << i << (deterministic ? "" : " (the plain model's own runs differ)")
          << ", largest difference " << max_error(fused[i], plain[i]);
    }
  }
}

TEST(FusedOpsCuda, LinearCrossEntropyUnderAutocastMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(32);
  const auto x = torch::randn({300, 64}), w = 0.2 * torch::randn({1000, 64});
  const auto t = torch::randint(0, 1000, {300}, torch::kLong);
  const auto xd = x.cuda().requires_grad_(), wd = w.cuda().requires_grad_();
  at::Tensor loss;
  {
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    loss = bittorch::ops::linear_cross_entropy(xd, wd, t.cuda(), -100, 64);  // five chunks, the last short
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
  loss.backward();
  const auto xc = x.to(torch::kDouble).requires_grad_(), wc = w.to(torch::kDouble).requires_grad_();
  const auto reference = torch::nn::functional::cross_entropy(xc.matmul(wc.t()), t);
  reference.backward();
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 2e-2);
  EXPECT_EQ(wd.grad().scalar_type(), torch::kFloat);  // the float32 master weight's gradient
  EXPECT_LE(max_error(xd.grad(), xc.grad()), 3e-2 * std::max(1e-3, xc.grad().abs().max().item<double>()) + 1e-4);
  EXPECT_LE(max_error(wd.grad(), wc.grad()), 3e-2 * std::max(1e-3, wc.grad().abs().max().item<double>()) + 1e-4);
}

TEST(FusedOpsCuda, FusedOpsEqualThePlainCompositionOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(33);
  bittorch::nn::TransformerLM model(
      bittorch::nn::TransformerOptions().vocab_size(50).width(64).heads(4).layers(2).context(32));
  model->to(torch::kCUDA);
  const auto tokens = torch::randint(0, 50, {3, 20}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  const auto targets = torch::randint(0, 50, {3, 20}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  const auto run = [&](bool fused) {
    model->set_fused_ops(fused);
    model->zero_grad();
    const auto loss = model->loss(tokens, targets);
    loss.backward();
    std::vector<torch::Tensor> grads = {loss.detach()};
    for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
    return grads;
  };
  const auto fused = run(true), plain = run(false);
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_TRUE(torch::allclose(fused[i], plain[i], 1e-4, 1e-5)) << i;
}

// The ternary model's q, k and v as one product (ProjectionHolder::joined_products, the
// default) against each on its own, under BF16 autocast with 16-bit and 8-bit activations:
// loss and every gradient. The joined input gradient is summed in float32 inside one GEMM
// where the separate ones add three bfloat16 gradients, hence a bfloat16 tolerance.
TEST(FusedOpsCuda, JoinedProjectionsEqualSeparateOnesUnderAutocast) {
  SKIP_WITHOUT_CUDA();
  for (const int64_t bits : {0, 8}) {
    torch::manual_seed(34);
    bittorch::nn::TransformerLM model(
        bittorch::nn::TransformerOptions().vocab_size(64).width(128).heads(4).layers(2).context(64));
    bittorch::nn::convert_to_ternary(*model, bittorch::quant::QuantConfig().activation_bits(bits),
                                     bittorch::nn::is_transformer_projection);
    model->to(torch::kCUDA);
    const auto options = torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA);
    const auto tokens = torch::randint(0, 64, {4, 48}, options), targets = torch::randint(0, 64, {4, 48}, options);
    const auto run = [&](bool joined) {
      for (const auto& block : *model->blocks) {
        block->as<bittorch::nn::TransformerBlockImpl>()->attention->joined_products = joined;
      }
      return autocast_loss_and_gradients(model, tokens, targets);
    };
    const auto joined = run(true);
    expect_within_bfloat16(joined, run(false), "bits " + std::to_string(bits));
  }
}

}  // namespace
