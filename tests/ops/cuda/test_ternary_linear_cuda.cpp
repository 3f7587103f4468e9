// The CUDA implementation against the CPU reference: quantization bit for bit, and the
// layer's forward and gradients against the float64 reference of reference.h. Every test skips with a message where no GPU exists.

#include <bittorch/bittorch.h>

#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

namespace F = bittorch::nn::functional;
using bittorch::quant::ScaleMode;

#define SKIP_WITHOUT_CUDA()                                                         \
  if (!torch::cuda::is_available()) {                                               \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

// Relative to the largest magnitude of the reference result.
double tolerance(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat: return 2e-5;
    case torch::kHalf: return 4e-3;
    // bfloat16: 8 bits of mantissa, and PyTorch lets cuBLAS reduce split-K partial sums in
    // bfloat16 by default (allow_bf16_reduced_precision_reduction).
    default: return 4e-2;
  }
}

void expect_close(const torch::Tensor& cuda, const torch::Tensor& expected, torch::Dtype dtype,
                  const std::string& what) {
  ASSERT_TRUE(cuda.is_cuda()) << what;
  ASSERT_EQ(cuda.sizes(), expected.sizes()) << what;
  ASSERT_EQ(cuda.scalar_type(), dtype) << what;
  if (expected.numel() == 0) return;
  const double magnitude = std::max(1.0, expected.abs().max().item<double>());
  const double error = (cuda.cpu().to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(error, tolerance(dtype) * magnitude) << what << ": max error " << error;
}

struct Shape {
  std::vector<int64_t> input;  // last dimension is in_features
  int64_t out_features;
};

// 32 shapes: 1x1x1, odd K and N, 1 and 3 rows, 3-D and 4-D inputs, empty batches, large.
const std::vector<Shape> kShapes = {
    {{1, 1}, 1},       {{1, 1}, 3},       {{3, 1}, 1},        {{1, 2}, 1},       {{1, 7}, 5},
    {{3, 7}, 9},       {{3, 13}, 11},     {{1, 15}, 17},      {{5, 31}, 33},     {{2, 63}, 65},
    {{8, 100}, 37},    {{3, 127}, 129},   {{16, 255}, 257},   {{1, 256}, 256},   {{3, 1000}, 7},
    {{7, 4095}, 3},    {{2, 3, 9}, 5},    {{2, 2, 2, 17}, 9}, {{4, 5, 64}, 48},  {{0, 8}, 4},
    {{2, 0, 5}, 3},    {{0, 1}, 1},       {{64, 128}, 96},    {{33, 257}, 130},  {{128, 512}, 384},
    {{1, 2048}, 1000}, {{3, 1}, 4096},    {{9}, 6},           {{256, 64}, 8},    {{1, 4096}, 4096},
    {{3, 4096}, 4096}, {{17, 333}, 4097},
};

class CudaMatchesCpu : public ::testing::TestWithParam<std::tuple<torch::Dtype, ScaleMode, bool>> {};

TEST_P(CudaMatchesCpu, ForwardAndGradients) {
  SKIP_WITHOUT_CUDA();
  const auto [dtype, mode, per_channel] = GetParam();
  torch::manual_seed(20);
  const auto options = F::TernaryLinearFuncOptions().scale_mode(mode).per_channel(per_channel).threshold_factor(0.1);
  for (const auto& shape : kShapes) {
    const int64_t in_features = shape.input.back();
    std::ostringstream what;
    what << "input " << torch::IntArrayRef(shape.input) << " out " << shape.out_features;
    const auto x = torch::randn(shape.input).to(dtype);
    const auto w = (torch::randn({shape.out_features, in_features}) * 0.1).to(dtype);
    const auto b = torch::randn({shape.out_features}).to(dtype);
    auto grad_shape = shape.input;
    grad_shape.back() = shape.out_features;
    const auto grad = torch::randn(grad_shape).to(dtype);
    // The reference: the codes and scale of the CPU quantizer in `dtype` (bit-identical to
    // the CUDA quantizer, TernarizeCuda.BitIdenticalToCpu), then the layer in float64.
    const auto q = bittorch::quant::ternarize(w, options.ternarize_options());
    const auto ref = bittorch::testing::reference_ternary_linear(
        x, w, b, grad, {q.codes.to(torch::kDouble), q.scale.to(torch::kDouble)});
    auto xd = x.cuda().requires_grad_();
    auto wd = w.cuda().requires_grad_();
    auto bd = b.cuda().requires_grad_();
    const auto y = F::ternary_linear(xd, wd, bd, options);
    y.backward(grad.cuda());
    expect_close(y, ref.output, dtype, what.str() + " output");
    expect_close(xd.grad(), ref.grad_input, dtype, what.str() + " grad_input");
    expect_close(wd.grad(), ref.grad_weight, dtype, what.str() + " grad_weight");
    expect_close(bd.grad(), ref.grad_bias, dtype, what.str() + " grad_bias");
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<torch::Dtype, ScaleMode, bool>>& info) {
  return std::string(c10::toString(std::get<0>(info.param))) + "_" +
         bittorch::quant::to_string(std::get<1>(info.param)) +
         (std::get<2>(info.param) ? "_per_channel" : "_global");
}

INSTANTIATE_TEST_SUITE_P(DtypesModesGranularities, CudaMatchesCpu,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kHalf, torch::kBFloat16),
                                            ::testing::Values(ScaleMode::Max, ScaleMode::AbsMean),
                                            ::testing::Bool()),
                         case_name);

TEST(TernarizeCuda, BitIdenticalToCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(21);
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16, torch::kDouble}) {
    for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
      for (bool per_channel : {true, false}) {
        for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 1}, {3, 7}, {65, 129}, {4096, 4096}, {11008, 37}}) {
          for (double threshold_factor : {0.0, 0.05, 0.5, 1.0}) {
            const auto w = torch::randn(shape).to(dtype);
            const auto opts = bittorch::quant::TernarizeOptions().scale_mode(mode).per_channel(per_channel).threshold_factor(threshold_factor);
            const auto cpu = bittorch::quant::ternarize(w, opts);
            const auto gpu = bittorch::quant::ternarize(w.cuda(), opts);
            const std::string what = std::string(c10::toString(dtype)) + " " + bittorch::quant::to_string(mode) +
                                     (per_channel ? " per-channel " : " global ") + std::to_string(shape[0]) + "x" +
                                     std::to_string(shape[1]) + " threshold " + std::to_string(threshold_factor);
            if (dtype == torch::kDouble) {  // double sums in another order: the last bits differ
              EXPECT_TRUE(torch::allclose(gpu.scale.cpu(), cpu.scale, 1e-12, 0)) << what;
              continue;
            }
            EXPECT_TRUE(torch::equal(gpu.scale.cpu(), cpu.scale)) << what;
            EXPECT_TRUE(torch::equal(gpu.codes.cpu(), cpu.codes)) << what;
          }
        }
      }
    }
  }
}

// One training step's outputs and gradients on `device` (and the current stream).
std::vector<torch::Tensor> step(torch::Device device, const F::TernaryLinearFuncOptions& options = {}) {
  torch::manual_seed(22);
  auto x = torch::randn({37, 301}).to(device).requires_grad_();
  auto w = torch::randn({129, 301}).to(device).requires_grad_();
  auto b = torch::randn({129}).to(device).requires_grad_();
  const auto y = F::ternary_linear(x, w, b, options);
  y.pow(2).sum().backward();
  return {y.detach().cpu(), x.grad().cpu(), w.grad().cpu(), b.grad().cpu()};
}

void expect_all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

TEST(TernaryLinearCuda, DeterministicAcrossRuns) {
  SKIP_WITHOUT_CUDA();
  expect_all_equal(step(torch::kCUDA), step(torch::kCUDA));
}

TEST(TernaryLinearCuda, SecondStreamGivesTheSameResults) {
  SKIP_WITHOUT_CUDA();
  const auto on_default = step(torch::kCUDA);
  const auto stream = c10::cuda::getStreamFromPool();
  c10::cuda::CUDAStreamGuard guard(stream);
  expect_all_equal(step(torch::kCUDA), on_default);
}

TEST(TernaryLinearCuda, SecondDeviceGivesTheSameResults) {
  SKIP_WITHOUT_CUDA();
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "only one CUDA device: second-device test skipped";
  expect_all_equal(step(torch::Device(torch::kCUDA, 1)), step(torch::Device(torch::kCUDA, 0)));
}

TEST(TernaryLinearCuda, UnfusedPathAgrees) {
  SKIP_WITHOUT_CUDA();
  const auto fused = step(torch::kCUDA);
  const auto unfused = step(torch::kCUDA, F::TernaryLinearFuncOptions().use_cuda_kernel(false));
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused[i], unfused[i], 1e-4, 1e-3)) << "tensor " << i;
  }
}

TEST(TernaryLinearCuda, NonContiguousInput) {
  SKIP_WITHOUT_CUDA();
  const auto base = torch::randn({50, 20}, torch::kCUDA);
  const auto w = torch::randn({7, 50}, torch::kCUDA);
  EXPECT_TRUE(torch::allclose(F::ternary_linear(base.t(), w), F::ternary_linear(base.t().contiguous(), w)));
}

TEST(TernaryLinearCuda, AutocastRunsInTheAutocastDtype) {
  SKIP_WITHOUT_CUDA();
  bittorch::nn::TernaryLinear layer(64, 32);
  layer->to(torch::kCUDA);
  const auto x = torch::randn({8, 64}, torch::kCUDA);
  torch::Tensor y;
  {
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    y = layer(x);
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  const auto reference = layer(x);
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat), reference, 2e-2, 2e-2));
  y.to(torch::kFloat).sum().backward();
  EXPECT_EQ(layer->weight.grad().scalar_type(), torch::kFloat);
}

TEST(TernaryLinearCuda, ModelLearnsOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(23);
  torch::nn::Sequential model(bittorch::nn::TernaryLinear(8, 32), torch::nn::ReLU(), bittorch::nn::TernaryLinear(32, 1));
  model->to(torch::kCUDA);
  const auto x = torch::randn({512, 8}, torch::kCUDA);
  const auto y = x.mm(torch::randn({8, 1}, torch::kCUDA));
  torch::optim::Adam optimizer(model->parameters(), 1e-2);
  const double initial = torch::mse_loss(model->forward(x), y).item<double>();
  for (int i = 0; i < 300; ++i) {
    optimizer.zero_grad();
    torch::mse_loss(model->forward(x), y).backward();
    optimizer.step();
  }
  EXPECT_LT(torch::mse_loss(model->forward(x), y).item<double>(), 0.25 * initial);
}

}  // namespace
