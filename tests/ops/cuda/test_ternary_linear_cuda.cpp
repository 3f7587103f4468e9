// The CUDA implementation against the CPU reference: quantization bit for bit, and the
// layer's forward and gradients against the float64 reference of reference.h. Every test skips with a message where no
// GPU exists.

#include <bittorch/bittorch.h>

#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

namespace F = bittorch::nn::functional;
using bittorch::quant::ActivationFormat;
using bittorch::quant::ScaleMode;
using bittorch::testing::throws_error_mentioning;

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

// Relative to the largest magnitude of the reference result.
double tolerance(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat:
      return 2e-5;
    case torch::kHalf:
      return 4e-3;
    // bfloat16: 8 bits of mantissa, and PyTorch lets cuBLAS reduce split-K partial sums in
    // bfloat16 by default (allow_bf16_reduced_precision_reduction).
    default:
      return 4e-2;
  }
}

// FP8 products accumulate in reduced precision (cuBLASLt's fast accumulation, as FP8
// training recipes use for the forward): about 1e-3 of the magnitude.
double tolerance(torch::Dtype dtype, ActivationFormat format) {
  return format == ActivationFormat::Float8E4M3 ? std::max(tolerance(dtype), 2e-3) : tolerance(dtype);
}

void expect_close(const torch::Tensor& cuda, const torch::Tensor& expected, torch::Dtype dtype, const std::string& what,
                  ActivationFormat format = ActivationFormat::None) {
  ASSERT_TRUE(cuda.is_cuda()) << what;
  ASSERT_EQ(cuda.sizes(), expected.sizes()) << what;
  ASSERT_EQ(cuda.scalar_type(), dtype) << what;
  if (expected.numel() == 0) return;
  const double magnitude = std::max(1.0, expected.abs().max().item<double>());
  const double error = (cuda.cpu().to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LE(error, tolerance(dtype, format) * magnitude) << what << ": max error " << error;
}

// bittorch::ternary_linear (max scale, threshold 0.1) forward and backward on the GPU against
// the float64 reference on the same ternary weight and (8-bit formats) the same quantized
// activations, bit-identical on both devices. grad_weight has the weight's dtype (float32 for a
// master weight) and the input dtype's tolerance.
void expect_layer_matches_reference(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                    const torch::Tensor& grad, bool per_channel, ActivationFormat format,
                                    const std::string& what) {
  const auto dtype = x.scalar_type();
  const auto q = bittorch::nn::functional::ternarize(
      w, bittorch::quant::QuantConfig().per_channel(per_channel).threshold_factor(0.1));
  const auto activations = bittorch::testing::reference_quantize_activations(x, format == ActivationFormat::Int8);
  const auto ref = bittorch::testing::reference_ternary_linear(
      x, w, b, grad, {q.codes.to(torch::kDouble), q.scale.to(torch::kDouble)},
      format == ActivationFormat::None ? nullptr : &activations);
  auto xd = x.cuda().requires_grad_();
  auto wd = w.cuda().requires_grad_();
  auto bd = b.cuda().requires_grad_();
  const auto y = bittorch::ops::ternary_linear(xd, wd, bd, 0.1, per_channel, "max", bittorch::quant::to_string(format));
  y.backward(grad.cuda());
  expect_close(y, ref.output, dtype, what + " output", format);
  expect_close(xd.grad(), ref.grad_input, dtype, what + " grad_input");
  ASSERT_EQ(wd.grad().scalar_type(), w.scalar_type()) << what;
  ASSERT_EQ(wd.grad().sizes(), ref.grad_weight.sizes()) << what;
  const double magnitude = std::max(1.0, ref.grad_weight.abs().max().item<double>());
  EXPECT_LE((wd.grad().cpu().to(torch::kDouble) - ref.grad_weight).abs().max().item<double>(),
            tolerance(dtype) * magnitude)
      << what << " grad_weight";
  expect_close(bd.grad(), ref.grad_bias, dtype, what + " grad_bias");
}

struct Shape {
  std::vector<int64_t> input;  // last dimension is in_features
  int64_t out_features;
};

// 32 shapes: 1x1x1, odd K and N, 1 and 3 rows, 3-D and 4-D inputs, empty batches, large.
const std::vector<Shape> kShapes = {
    {{1, 1}, 1},       {{1, 1}, 3},       {{3, 1}, 1},    {{1, 2}, 1},    {{1, 7}, 5},     {{3, 7}, 9},
    {{3, 13}, 11},     {{1, 15}, 17},     {{5, 31}, 33},  {{2, 63}, 65},  {{8, 100}, 37},  {{3, 127}, 129},
    {{16, 255}, 257},  {{1, 256}, 256},   {{3, 1000}, 7}, {{7, 4095}, 3}, {{2, 3, 9}, 5},  {{2, 2, 2, 17}, 9},
    {{4, 5, 64}, 48},  {{0, 8}, 4},       {{2, 0, 5}, 3}, {{0, 1}, 1},    {{64, 128}, 96}, {{33, 257}, 130},
    {{128, 512}, 384}, {{1, 2048}, 1000}, {{3, 1}, 4096}, {{9}, 6},       {{256, 64}, 8},  {{1, 4096}, 4096},
    {{3, 4096}, 4096}, {{17, 333}, 4097},
};

class CudaMatchesCpu : public ::testing::TestWithParam<std::tuple<torch::Dtype, ScaleMode, bool>> {};

TEST_P(CudaMatchesCpu, ForwardAndGradients) {
  SKIP_WITHOUT_CUDA();
  const auto [dtype, mode, per_channel] = GetParam();
  torch::manual_seed(20);
  const auto options = F::TernaryLinearFuncOptions().quant(
      bittorch::quant::QuantConfig().scale_mode(mode).per_channel(per_channel).threshold_factor(0.1));
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
    const auto q = bittorch::nn::functional::ternarize(w, options.quant());
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
         bittorch::quant::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_per_channel" : "_global");
}

INSTANTIATE_TEST_SUITE_P(DtypesModesGranularities, CudaMatchesCpu,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kHalf, torch::kBFloat16),
                                            ::testing::Values(ScaleMode::Max, ScaleMode::AbsMean), ::testing::Bool()),
                         case_name);

// 8-bit activations: the fused CUDA op (cuBLASLt FP8 or INT8 where the shape allows, on rows
// padded with zeros where the library refuses the rows themselves, else up to 4 rows
// small_rows_product, beyond the exact bfloat16 fallback) against the float64
// reference on the same quantized values (bit-identical on both devices,
// QuantizeActivationsCuda.BitIdenticalToCpu).
class EightBitCudaMatchesCpu : public ::testing::TestWithParam<std::tuple<torch::Dtype, ActivationFormat, bool>> {};

TEST_P(EightBitCudaMatchesCpu, ForwardAndGradients) {
  SKIP_WITHOUT_CUDA();
  const auto [dtype, format, per_channel] = GetParam();
  torch::manual_seed(24);
  const auto format_name = bittorch::quant::to_string(format);
  // The kShapes plus shapes the 8-bit GEMMs take (K and N multiples of 16, more than 16 rows).
  auto shapes = kShapes;
  // Up to 16 rows with K = 11008 have no cuBLASLt FP8 kernel on an H100 and an H200: they run
  // on padded rows.
  shapes.insert(shapes.end(), {{{17, 32}, 16},
                               {{64, 256}, 128},
                               {{300, 1024}, 512},
                               {{2, 40, 4096}, 64},
                               {{1, 11008}, 4096},
                               {{2, 3, 11008}, 4096}});
  for (const auto& shape : shapes) {
    const int64_t in_features = shape.input.back();
    std::ostringstream what;
    what << format_name << " input " << torch::IntArrayRef(shape.input) << " out " << shape.out_features;
    const auto x = torch::randn(shape.input).to(dtype);
    const auto w = (torch::randn({shape.out_features, in_features}) * 0.1).to(dtype);
    const auto b = torch::randn({shape.out_features}).to(dtype);
    auto grad_shape = shape.input;
    grad_shape.back() = shape.out_features;
    const auto grad = torch::randn(grad_shape).to(dtype);
    expect_layer_matches_reference(x, w, b, grad, per_channel, format, what.str());
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesFormatsGranularities, EightBitCudaMatchesCpu,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kHalf, torch::kBFloat16),
                                            ::testing::Values(ActivationFormat::Int8, ActivationFormat::Float8E4M3),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(c10::toString(std::get<0>(info.param))) + "_" +
                                  bittorch::quant::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_per_channel" : "_global");
                         });

TEST(QuantizeActivationsCuda, BitIdenticalToCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(25);
  for (const auto format : {ActivationFormat::Int8, ActivationFormat::Float8E4M3}) {
    for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
      // Rows of up to 128 packs go a warp per row (1,024 16-bit features; 1,001 rows leave the
      // last block part empty), longer ones a block per row, or a warp from 4,096 rows (the
      // packs past the warp's registers read twice).
      for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 1},
                                                                 {3, 7},
                                                                 {0, 8},
                                                                 {2, 3, 33},
                                                                 {64, 4096},
                                                                 {5, 13001},
                                                                 {4, 30000},
                                                                 {1000, 64},
                                                                 {1001, 768},
                                                                 {9, 1024},
                                                                 {9, 1032},
                                                                 {4100, 3072},
                                                                 {300, 2048},
                                                                 {4100, 6144}}) {
        auto x = (torch::randn(shape) * torch::logspace(-4, 4, shape.back())).to(dtype);
        // A negative zero in every row: its code keeps the sign (FP8's 0x80), as on the CPU.
        if (x.numel() > 0) x.select(-1, 0).fill_(-0.0);
        const auto cpu = bittorch::nn::functional::quantize_activations(x, format);
        const auto gpu = bittorch::nn::functional::quantize_activations(x.cuda(), format);
        std::ostringstream what;
        what << bittorch::quant::to_string(format) << " " << dtype << " " << torch::IntArrayRef(shape);
        EXPECT_TRUE(torch::equal(gpu.values.cpu().view(torch::kChar), cpu.values.view(torch::kChar))) << what.str();
        EXPECT_TRUE(torch::equal(gpu.scale.cpu(), cpu.scale)) << what.str();
      }
    }
  }
}

// Rows holding NaN or +-Inf: a NaN or infinite scale and zero values, as on the CPU (the CUDA
// row statistic keeps a NaN, where fmax would drop it), bit for bit.
TEST(QuantizeActivationsCuda, NonFiniteRowsAsOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(27);
  for (const auto format : {ActivationFormat::Int8, ActivationFormat::Float8E4M3}) {
    for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
      for (const int64_t cols : {7, 64, 5000}) {
        auto x = torch::randn({4, cols});
        x[0][cols / 2] = std::nanf("");
        x[1][0] = INFINITY;
        x[2][cols - 1] = -INFINITY;
        x = x.to(dtype);
        const auto cpu = bittorch::nn::functional::quantize_activations(x, format);
        const auto gpu = bittorch::nn::functional::quantize_activations(x.cuda(), format);
        const auto what = c10::str(bittorch::quant::to_string(format), " ", dtype, " cols ", cols);
        EXPECT_TRUE(torch::equal(gpu.values.cpu().view(torch::kChar), cpu.values.view(torch::kChar))) << what;
        EXPECT_TRUE(torch::allclose(gpu.scale.cpu(), cpu.scale, 0, 0, /*equal_nan=*/true))
            << what << gpu.scale << cpu.scale;
        EXPECT_TRUE(std::isnan(gpu.scale[0][0].item<float>()) && std::isinf(gpu.scale[1][0].item<float>())) << what;
      }
    }
  }
}

// The quantizer refuses a non-finite weight on the GPU too; the fused training op (which does
// not read the weight to check it) gives NaN in that row's output column, as on the CPU.
TEST(TernaryLinearCuda, NonFiniteWeights) {
  SKIP_WITHOUT_CUDA();
  for (const auto* mode : {"max", "absmean"}) {
    for (const bool per_channel : {true, false}) {
      auto weight = torch::randn({6, 64});
      weight[2][5] = std::nanf("");
      const auto x = torch::randn({3, 64});
      EXPECT_TRUE(throws_error_mentioning([&] { bittorch::ops::ternarize(weight.cuda(), 0.05, per_channel, mode); },
                                          {"non-finite", "[2, 5]"}));
      for (const auto* format : {"none", "int8", "float8_e4m3"}) {
        const auto cpu = bittorch::ops::ternary_linear(x, weight, std::nullopt, 0.05, per_channel, mode, format);
        const auto gpu =
            bittorch::ops::ternary_linear(x.cuda(), weight.cuda(), std::nullopt, 0.05, per_channel, mode, format).cpu();
        const auto what = c10::str(mode, " per_channel ", per_channel, " ", format);
        EXPECT_TRUE(torch::equal(torch::isnan(gpu), torch::isnan(cpu))) << what << gpu << cpu;
        EXPECT_TRUE(torch::isnan(gpu.select(1, 2)).all().item<bool>()) << what << gpu;
      }
    }
  }
}

TEST(TernaryLinearCuda, ActivationBitsPicksTheFormatOfTheDevice) {
  SKIP_WITHOUT_CUDA();
  const auto format = bittorch::ops::activation_format_for(8, torch::kCUDA);
  const auto* props = at::cuda::getCurrentDeviceProperties();
  EXPECT_EQ(format, props->major * 10 + props->minor >= 89 ? ActivationFormat::Float8E4M3 : ActivationFormat::Int8);
  const auto x = torch::randn({32, 64}, torch::kCUDA), w = torch::randn({48, 64}, torch::kCUDA);
  EXPECT_TRUE(torch::equal(
      F::ternary_linear(x, w, {},
                        F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(8))),
      bittorch::ops::ternary_linear(x, w, {}, 0.05, true, "max", bittorch::quant::to_string(format))));
}

TEST(TernaryLinearCudaModule, MatchesTernaryLinearAndRefusesCpuInputs) {
  SKIP_WITHOUT_CUDA();
  for (const int64_t bits : {0, 8}) {
    torch::manual_seed(26);
    bittorch::nn::TernaryLinearCUDA cuda_layer(
        bittorch::nn::TernaryLinearCUDAOptions(64, 32).quant(bittorch::quant::QuantConfig().activation_bits(bits)));
    torch::manual_seed(26);
    bittorch::nn::TernaryLinear layer(
        bittorch::nn::TernaryLinearOptions(64, 32).quant(bittorch::quant::QuantConfig().activation_bits(bits)));
    cuda_layer->to(torch::kCUDA);
    layer->to(torch::kCUDA);
    const auto x = torch::randn({16, 64}, torch::kCUDA);
    EXPECT_TRUE(torch::equal(cuda_layer(x), layer(x))) << "activation_bits " << bits;
    EXPECT_THROW(cuda_layer(x.cpu()), c10::Error);
  }
}

TEST(TernarizeCuda, BitIdenticalToCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(21);
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16, torch::kDouble}) {
    for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
      for (bool per_channel : {true, false}) {
        for (const auto& shape :
             std::vector<std::vector<int64_t>>{{1, 1},
                                               {3, 7},
                                               {65, 129},
                                               {4096, 4096},
                                               {11008, 37},
                                               {7, 30000},
                                               {5, 11008},
                                               // a warp per row, 4, 8 and 16 packs a lane (float32 and 16-bit weights)
                                               {97, 768},
                                               {40, 1000},
                                               {33, 2048}}) {
          for (double threshold_factor : {0.0, 0.05, 0.5, 1.0}) {
            const auto w = torch::randn(shape).to(dtype);
            const auto opts = bittorch::quant::QuantConfig()
                                  .scale_mode(mode)
                                  .per_channel(per_channel)
                                  .threshold_factor(threshold_factor);
            const auto cpu = bittorch::nn::functional::ternarize(w, opts);
            const auto gpu = bittorch::nn::functional::ternarize(w.cuda(), opts);
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

TEST(TernaryLinearCuda, EightBitDeterministicAcrossRuns) {
  SKIP_WITHOUT_CUDA();
  const auto options = F::TernaryLinearFuncOptions().quant(bittorch::quant::QuantConfig().activation_bits(8));
  expect_all_equal(step(torch::kCUDA, options), step(torch::kCUDA, options));
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
  const auto unfused = step(torch::kCUDA, F::TernaryLinearFuncOptions().fused(false));
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused[i], unfused[i], 1e-4, 1e-3)) << "tensor " << i;
  }
}

// Few rows: the library 8-bit products on padded rows where they take the shape, else
// small_rows_product up to 4 rows and the bfloat16 fallback beyond: every row
// count to 17, K that takes 16-byte loads and K that does not, N not a multiple of a block's
// 32 weight rows, FP32 master weights with 16-bit inputs, every activation format, against the
// float64 reference.
class SmallRowsMatchReference : public ::testing::TestWithParam<std::tuple<torch::Dtype, ActivationFormat>> {};

TEST_P(SmallRowsMatchReference, ForwardAndGradients) {
  SKIP_WITHOUT_CUDA();
  const auto [dtype, format] = GetParam();
  torch::manual_seed(31);
  const auto format_name = bittorch::quant::to_string(format);
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{16, 1},  {48, 33},   {4096, 64},
                                                          {33, 31}, {100, 257}, {2048, 97}};
  for (const int64_t rows : {1, 2, 3, 4, 5, 9, 16, 17}) {
    for (const auto& [in_features, out_features] : sizes) {
      for (const bool per_channel : {true, false}) {
        std::ostringstream what;
        what << format_name << " rows " << rows << " K " << in_features << " N " << out_features
             << (per_channel ? " per channel" : " global");
        const auto x = torch::randn({rows, in_features}).to(dtype);
        const auto w = torch::randn({out_features, in_features}) * 0.1;  // float32 master weight
        const auto b = torch::randn({out_features}).to(dtype);
        const auto grad = torch::randn({rows, out_features}).to(dtype);
        expect_layer_matches_reference(x, w, b, grad, per_channel, format, what.str());
      }
    }
  }
  // Rows that start 2 bytes past 16-byte alignment give what aligned ones give: bit for bit
  // with 8-bit activations (quantized into fresh rows first), within the dtype's tolerance
  // with 16-bit ones (cuBLAS may pick another kernel for a misaligned operand).
  const auto storage = torch::randn({1 + 3 * 64}).to(dtype).cuda();
  const auto shifted = storage.narrow(0, 1, 3 * 64).view({3, 64});
  const auto w = torch::randn({40, 64}, torch::kCUDA) * 0.1;
  const auto expected = bittorch::ops::ternary_linear(shifted.clone(), w, std::nullopt, 0.1, true, "max", format_name);
  const auto got = bittorch::ops::ternary_linear(shifted, w, std::nullopt, 0.1, true, "max", format_name);
  if (format == ActivationFormat::None) {
    expect_close(got, expected.cpu().to(torch::kDouble), dtype, format_name + " misaligned rows");
  } else {
    EXPECT_TRUE(torch::equal(got, expected)) << format_name << " misaligned rows";
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesFormats, SmallRowsMatchReference,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kHalf, torch::kBFloat16),
                                            ::testing::Values(ActivationFormat::None, ActivationFormat::Int8,
                                                              ActivationFormat::Float8E4M3)),
                         [](const auto& info) {
                           return std::string(c10::toString(std::get<0>(info.param))) + "_" +
                                  bittorch::quant::to_string(std::get<1>(info.param));
                         });

// FP8 e5m2 gradients on the GPU: the CUDA backward (fused quantization kernels and cuBLASLt's
// FP8 product where the GPU has FP8 tensor cores and both sizes are multiples of 16, else the
// float32 reference) against the CPU backward, which
// TernaryLinear.Float8E5M2GradientsMatchTheFormula checks against the formula; the same e5m2
// values on both, sums in another order. Shapes off the kernels' 64-wide tiles, per-channel and
// global scales, 16-bit and 8-bit activations.
TEST(TernaryLinearCuda, Float8E5M2GradientsMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(33);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& [rows, in_features, out_features] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {64, 256, 128}, {7, 4096, 1024}, {5, 40, 24}, {1, 80, 112}, {300, 208, 336}}) {
      for (const bool per_channel : {true, false}) {
        for (const char* activations : {"none", "float8_e4m3"}) {
          const auto what = c10::str(dtype, " ", rows, "x", in_features, "x", out_features, " per_channel ",
                                     per_channel, " activations ", activations);
          const auto x = torch::randn({rows, in_features}).to(dtype);
          const auto w = torch::randn({out_features, in_features}) * 0.05;
          const auto grad = (torch::randn({rows, out_features}) * 4).to(dtype);
          torch::Tensor grads[2];
          for (const bool cuda : {false, true}) {
            const auto device = cuda ? torch::kCUDA : torch::kCPU;
            // A leaf on each device (x.to(kCPU) is x itself).
            auto xi = x.to(device).detach().requires_grad_();
            bittorch::ops::ternary_linear(xi, w.to(device), std::nullopt, 0.05, per_channel, "max", activations,
                                          "float8_e5m2")
                .backward(grad.to(device));
            grads[cuda] = xi.grad().cpu().to(torch::kDouble);
          }
          const double magnitude = grads[0].abs().max().item<double>();
          // float32: Hopper's FP8 tensor cores add partial sums in fewer than 32 bits before
          // cuBLASLt promotes them (measured up to 1.02e-4 of the magnitude at K = 128);
          // 16-bit outputs: their rounding.
          const double tolerance = dtype == torch::kFloat ? 1e-3 : 1e-2;
          EXPECT_LE((grads[1] - grads[0]).abs().max().item<double>(), tolerance * magnitude) << what;
        }
      }
    }
  }
}

// The weight's half gives the operand exactly when asked for or needed (the 16-bit product
// multiplies it; grad_input needs it), equal to the CPU's, on every backend: 16-bit and 8-bit
// activations.
TEST(TernaryLinearCuda, OperandOnlyWhenKept) {
  SKIP_WITHOUT_CUDA();
  const auto w = torch::randn({24, 32}) * 0.1;
  for (const char* format : {"none", "int8"}) {
    for (const bool keep : {false, true}) {
      const auto [operand_cpu, codes_cpu, scale_cpu] =
          bittorch::ops::ternary_linear_quantize_weight(w, 0.05, true, "max", format, torch::kBFloat16, keep);
      const auto [operand_cuda, codes_cuda, scale_cuda] =
          bittorch::ops::ternary_linear_quantize_weight(w.cuda(), 0.05, true, "max", format, torch::kBFloat16, keep);
      const bool expected = keep || std::string(format) == "none";
      EXPECT_EQ(operand_cpu.defined(), expected) << format;
      ASSERT_EQ(operand_cuda.defined(), expected) << format;
      if (expected) EXPECT_TRUE(torch::equal(operand_cuda.cpu(), operand_cpu)) << format;
      EXPECT_TRUE(torch::equal(scale_cuda.cpu(), scale_cpu)) << format;
    }
  }
}

TEST(TernaryLinearCuda, NonContiguousInput) {
  SKIP_WITHOUT_CUDA();
  const auto base = torch::randn({50, 20}, torch::kCUDA);
  const auto w = torch::randn({7, 50}, torch::kCUDA);
  EXPECT_TRUE(torch::allclose(F::ternary_linear(base.t(), w), F::ternary_linear(base.t().contiguous(), w)));
}

class AutocastRunsInTheAutocastDtype : public ::testing::TestWithParam<int64_t> {};

TEST_P(AutocastRunsInTheAutocastDtype, WithActivationBits) {
  SKIP_WITHOUT_CUDA();
  bittorch::nn::TernaryLinear layer(
      bittorch::nn::TernaryLinearOptions(64, 32).quant(bittorch::quant::QuantConfig().activation_bits(GetParam())));
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
  // The same layer in float32 on the bfloat16-rounded input: with 8-bit activations both
  // quantize it to the same values.
  const auto reference = layer(x.to(torch::kBFloat16).to(torch::kFloat));
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat), reference, 2e-2, 2e-2));
  y.to(torch::kFloat).sum().backward();
  EXPECT_EQ(layer->weight.grad().scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(ActivationBits, AutocastRunsInTheAutocastDtype, ::testing::Values(0, 8));

TEST(TernaryLinearCuda, ModelLearnsOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(23);
  torch::nn::Sequential model(bittorch::nn::TernaryLinear(8, 32), torch::nn::ReLU(),
                              bittorch::nn::TernaryLinear(32, 1));
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
