// The packed layer on CUDA against the CPU kernel (itself tested against TernaryLinear), for
// every path: the tensor-core kernels (16-bit and 8-bit activations, each tile configuration,
// row counts that leave partial tiles and slices, the tiled GEMM with and without split K),
// the float32 GEMV (up to 4 rows) and the expanded operand with cuBLAS (more rows).

#include <bittorch/bittorch.h>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "temp_dir.h"

#include <algorithm>

namespace {

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

double tolerance(torch::Dtype dtype, const std::string& format) {
  const double base = dtype == torch::kFloat ? 2e-5 : dtype == torch::kHalf ? 4e-3 : 2e-2;
  return format == "float8_e4m3" ? std::max(base, 2e-3) : base;
}

TEST(PackedLinearCuda, MatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(50);
  const std::vector<int64_t> row_counts = {0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 64, 65, 256, 300};
  // in_features: below one word, not a multiple of 4 words (scalar code loads), more chunks
  // than warps; out_features: partial 16- and 32-feature tiles.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},      {15, 7},    {16, 16},   {17, 3},
                                                           {64, 65},    {100, 33},  {784, 256}, {4096, 64},
                                                           {1000, 130}, {1040, 50}, {8192, 40}};
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const std::string format : {"none", "int8", "float8_e4m3"}) {
      for (const auto& [in, out] : shapes) {
        const auto codes = torch::randint(-1, 2, {out, in}, torch::kChar);
        const auto packed = bittorch::quant::pack_ternary(codes);
        const auto scale = out % 2 == 0 ? torch::rand({out}) + 0.1 : torch::rand({1}) + 0.1;
        const auto bias = torch::randn({out}).to(dtype);
        for (const int64_t rows : row_counts) {
          const auto x = torch::randn({rows, in}).to(dtype);
          const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format);
          const auto gpu =
              bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(), in, format);
          const auto what = c10::str(dtype, " ", format, " rows ", rows, " in ", in, " out ", out);
          ASSERT_EQ(gpu.sizes(), cpu.sizes()) << what;
          ASSERT_EQ(gpu.scalar_type(), dtype) << what;
          if (rows == 0) continue;
          const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
          const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
          EXPECT_LE(error, tolerance(dtype, format) * magnitude) << what << ": max error " << error;
        }
      }
    }
  }
}

// Each kernel variant by name (the heuristics aside) on every shape class it takes, against
// the CPU kernel; the calls a variant cannot run are errors that name it.
TEST(PackedLinearCuda, EveryVariantByNameMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(51);
  const auto names = bittorch::ops::packed_kernel_names(torch::kCUDA);
  ASSERT_EQ(names.front(), "auto");
  const auto* device = at::cuda::getCurrentDeviceProperties();
  const bool fp8_tensor_cores = device->major * 10 + device->minor >= 89;
  const bool sm90a = device->major == 9 && device->minor == 0;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {17, 3}, {64, 65}, {1000, 130}, {8192, 40}};
  const std::vector<int64_t> row_counts = {1, 3, 8, 9, 17, 65, 130};
  int checked = 0;
  for (size_t k = 1; k < names.size(); ++k) {
    const std::string& kernel = names[k];
    for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
      for (const std::string format : {"none", "int8", "float8_e4m3"}) {
        const bool tensor_cores = format != "none" || dtype != torch::kFloat;
        for (const auto& [in, out] : shapes) {
          const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
          const auto scale = torch::rand({out}) + 0.1;
          const auto bias = torch::randn({out}).to(dtype);
          for (const int64_t rows : row_counts) {
            const auto x = torch::randn({rows, in}).to(dtype);
            const auto run = [&] {
              return bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(), in,
                                                          format, kernel);
            };
            const bool runs =
                (kernel == "gemv" && !tensor_cores) || (kernel == "mma" && tensor_cores && rows <= 8) ||
                (kernel == "split_k" && tensor_cores) ||
                ((kernel == "stream" || kernel == "tiled") && tensor_cores &&
                 (format != "float8_e4m3" || fp8_tensor_cores)) ||
                (kernel == "wgmma" && sm90a && dtype != torch::kFloat &&
                 (format == "none" || format == "float8_e4m3") && packed.size(1) % 4 == 0 && out % 8 == 0) ||
                kernel == "expand";
            const auto what = c10::str(kernel, " ", dtype, " ", format, " rows ", rows, " in ", in, " out ", out);
            if (!runs) {
              try {
                run();
                ADD_FAILURE() << what << ": expected an error";
              } catch (const c10::Error& error) {
                EXPECT_NE(std::string(error.what()).find(kernel), std::string::npos) << what << ": " << error.what();
              }
              continue;
            }
            const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format);
            const auto gpu = run();
            ASSERT_EQ(gpu.sizes(), cpu.sizes()) << what;
            const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
            const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
            EXPECT_LE(error, tolerance(dtype, format) * magnitude) << what << ": max error " << error;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 300);
}

// 16-bit rows with int8 activations: the mma kernel quantizes them in its prologue, split_k
// after quantize_activations' kernel. Their integer sums are exact, so the outputs are equal.
TEST(PackedLinearCuda, TheMmaPrologueQuantizesAsQuantizeActivations) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(52);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{16, 5}, {40, 31}, {768, 2304}, {3072, 768}, {4100, 70}};
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    for (const auto& [in, out] : shapes) {
      const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar)).cuda();
      const auto scale = (torch::rand({out}) + 0.1).cuda();
      const auto bias = torch::randn({out}).to(dtype).cuda();
      for (const int64_t rows : {1, 2, 5, 8}) {
        for (const bool offset : {false, true}) {  // rows one element in: the prologue's 2-byte loads
          const auto flat = torch::randn({rows * in + 1}).to(dtype).cuda();
          const auto x = flat.narrow(0, offset ? 1 : 0, rows * in).view({rows, in});
          x.select(0, 0).mul_(1000);  // rows of different scales
          for (const std::string epilogue : {"none", "squared_relu"}) {
            const auto call = [&](const std::string& kernel) {
              return bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, "int8", kernel, epilogue);
            };
            EXPECT_TRUE(torch::equal(call("mma"), call("split_k")))
                << dtype << " rows " << rows << " in " << in << " out " << out << " " << epilogue
                << (offset ? " offset" : "");
          }
        }
      }
    }
  }
}

// The "squared_relu" epilogue in each variant that runs the call, against the CPU kernel's.
TEST(PackedLinearCuda, EveryVariantAppliesTheSquaredReluEpilogue) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(52);
  const auto names = bittorch::ops::packed_kernel_names(torch::kCUDA);
  int checked = 0;
  for (size_t k = 1; k < names.size(); ++k) {
    const std::string& kernel = names[k];
    for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
      for (const std::string format : {"none", "int8"}) {
        const bool tensor_cores = format != "none" || dtype != torch::kFloat;
        for (const auto& [in, out] : std::vector<std::pair<int64_t, int64_t>>{{17, 3}, {1000, 130}}) {
          const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
          const auto scale = torch::rand({out}) + 0.1;
          const auto bias = torch::randn({out}).to(dtype);
          for (const int64_t rows : {1, 9, 65}) {
            const bool runs = (kernel == "gemv" && !tensor_cores) || (kernel == "mma" && tensor_cores && rows <= 8) ||
                              ((kernel == "split_k" || kernel == "stream" || kernel == "tiled") && tensor_cores) ||
                              kernel == "expand";
            if (!runs) continue;
            const auto x = torch::randn({rows, in}).to(dtype);
            const auto cpu =
                bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format, "auto", "squared_relu");
            const auto gpu = bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(),
                                                                  in, format, kernel, "squared_relu");
            const auto what = c10::str(kernel, " ", dtype, " ", format, " rows ", rows, " in ", in, " out ", out);
            ASSERT_EQ(gpu.sizes(), cpu.sizes()) << what;
            EXPECT_GE(cpu.min().item<double>(), 0.0) << what;
            const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
            const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
            // Squares double the relative error of the value before them.
            EXPECT_LE(error, 2 * tolerance(dtype, format) * magnitude) << what << ": max error " << error;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(PackedLinearCuda, WideLayersMatchTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  // Enough output features for two mma tiles per warp in the small-batch kernel (chosen from
  // about six blocks per multiprocessor: any GPU up to 176 multiprocessors).
  torch::manual_seed(53);
  const int64_t in = 100, out = 32768 + 5;
  const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
  const auto scale = torch::rand({out}) + 0.1;
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    for (const std::string format : {"none", "int8"}) {
      const auto bias = torch::randn({out}).to(dtype);
      for (const int64_t rows : {1, 5, 8}) {
        const auto x = torch::randn({rows, in}).to(dtype);
        const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format);
        const auto gpu =
            bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(), in, format);
        const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
        const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
        EXPECT_LE(error, tolerance(dtype, format) * magnitude) << dtype << " " << format << " rows " << rows;
      }
    }
  }
}

// The stream kernel where its blocks split K (a long K and few features) and where they do not
// (many features), on each of its row slices: the CPU kernel's outputs, and the same outputs
// on every run (the split sums are added in a fixed order).
TEST(PackedLinearCuda, StreamSplitsAddTheSameSumsOnEveryRun) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(56);
  const auto* device = at::cuda::getCurrentDeviceProperties();
  const bool fp8_tensor_cores = device->major * 10 + device->minor >= 89;
  for (const auto& [in, out] : std::vector<std::pair<int64_t, int64_t>>{{16384, 300}, {768, 20000}}) {
    const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
    const auto scale = torch::rand({out}) + 0.1;
    for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
      for (const std::string format : {"none", "int8", "float8_e4m3"}) {
        if (format == "float8_e4m3" && !fp8_tensor_cores) continue;
        const auto bias = torch::randn({out}).to(dtype);
        for (const int64_t rows : {2, 16, 31, 64, 100}) {
          const auto x = torch::randn({rows, in}).to(dtype);
          const auto run = [&] {
            return bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(), in, format,
                                                        "stream");
          };
          const auto what = c10::str(dtype, " ", format, " rows ", rows, " in ", in, " out ", out);
          const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format);
          const auto gpu = run();
          const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
          const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
          EXPECT_LE(error, tolerance(dtype, format) * magnitude) << what << ": max error " << error;
          EXPECT_TRUE(torch::equal(gpu, run())) << what;
        }
      }
    }
  }
}

// Why the wgmma variant cannot run here (it is listed where it is built, and runs on compute
// capability 9.0), or empty.
std::string wgmma_unavailable() {
  const auto names = bittorch::ops::packed_kernel_names(torch::kCUDA);
  if (std::find(names.begin(), names.end(), "wgmma") == names.end()) {
    return "the wgmma variant is not built (CUTLASS's headers were not found)";
  }
  const auto* device = at::cuda::getCurrentDeviceProperties();
  if (device->major != 9 || device->minor != 0) return "the wgmma variant runs on compute capability 9.0 GPUs only";
  return "";
}

// The wgmma variant (listed where it is built; it runs on compute capability 9.0) on the
// shapes it takes: partial 128-feature and 64/128-row tiles, K from one 64-element stage to
// many (stream-K splits them where the tiles do not fill the GPU), the language model's widths;
// 16-bit rows and e4m3 ones (a scale per row in the epilogue); per-channel and single scales,
// with and without bias (one misaligned), both epilogues; the same outputs on a second run
// (stream-K adds its partial sums in a fixed order).
TEST(PackedLinearCuda, WgmmaMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  if (const std::string why = wgmma_unavailable(); !why.empty()) GTEST_SKIP() << why << ": test skipped";
  torch::manual_seed(57);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{64, 8},     {1020, 136},  {768, 3072},
                                                           {3072, 768}, {8192, 1000}, {256, 20000}};
  int checked = 0;
  for (const auto& [in, out] : shapes) {
    const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
    for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
      for (const std::string format : {"none", "float8_e4m3"}) {
        for (const int64_t rows : {1, 9, 64, 65, 130, 300}) {
          const bool single_scale = rows % 2 == 1;
          const auto scale = single_scale ? torch::rand({1}) + 0.1 : torch::rand({out}) + 0.1;
          // No bias at 9 rows; at 130 one that starts 2 bytes into its storage (the epilogue's
          // vector loads need a copy).
          const auto gpu_bias = rows == 9     ? std::optional<torch::Tensor>()
                                : rows == 130 ? torch::randn({out + 1}).to(dtype).cuda().narrow(0, 1, out)
                                              : torch::randn({out}).to(dtype).cuda();
          const auto bias = gpu_bias ? std::optional(gpu_bias->cpu()) : std::nullopt;
          // Rows of different magnitudes over four decades: each e4m3 row has its own scale.
          const auto magnitudes = torch::logspace(-2, 2, rows).unsqueeze(1);
          const auto rows_of = [&](double factor) {
            return (torch::randn({rows, in}) * magnitudes * factor).to(dtype);
          };
          for (const std::string epilogue : {"none", "squared_relu"}) {
            // An output above 256 squares past float16's largest value (inf on both sides, NaN
            // between them): there the rows are 1000 times smaller (outputs up to about 40),
            // still four decades apart.
            const auto x = rows_of(dtype == torch::kHalf && epilogue == "squared_relu" ? 1e-3 : 1.0);
            const auto run = [&] {
              return bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), gpu_bias, in, format,
                                                          "wgmma", epilogue);
            };
            const auto what = c10::str(dtype, " ", format, " rows ", rows, " in ", in, " out ", out, " ", epilogue,
                                       single_scale ? " one scale" : "", bias ? "" : " no bias");
            const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format, "auto", epilogue);
            const auto gpu = run();
            ASSERT_EQ(gpu.sizes(), cpu.sizes()) << what;
            ASSERT_EQ(gpu.scalar_type(), dtype) << what;
            // Each output row against its own magnitude (the rows span four orders of them).
            const auto cpu64 = cpu.to(torch::kDouble);
            const auto magnitude = cpu64.abs().amax(1, true).clamp_min(1.0);
            const double error = ((gpu.cpu().to(torch::kDouble) - cpu64).abs() / magnitude).max().item<double>();
            const double allowed = (epilogue == "squared_relu" ? 2 : 1) * tolerance(dtype, format);
            EXPECT_LE(error, allowed) << what << ": max error " << error << " of a row's largest output";
            EXPECT_TRUE(torch::equal(gpu, run())) << what;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 6 * 2 * 2 * 6 * 2);
}

// The wgmma variant keeps its copy of the codes in fragment order per packed tensor: a change
// in place (the version counter), another tensor, another stream and an inference tensor (whose
// codes are ordered in every call) each give the product of the codes as they are then.
TEST(PackedLinearCuda, WgmmaSeesEveryChangeOfTheCodes) {
  SKIP_WITHOUT_CUDA();
  if (const std::string why = wgmma_unavailable(); !why.empty()) GTEST_SKIP() << why << ": test skipped";
  torch::manual_seed(58);
  const int64_t rows = 64, in = 512, out = 200;
  const auto codes_of = [&] { return bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar)); };
  const auto scale = torch::rand({out}) + 0.1;
  const auto x = torch::randn({rows, in}).to(torch::kBFloat16);
  const auto expect_product_of = [&](const torch::Tensor& gpu_codes, const torch::Tensor& cpu_codes,
                                     const std::string& what) {
    for (const std::string format : {"none", "float8_e4m3"}) {
      const auto gpu =
          bittorch::ops::packed_ternary_linear(x.cuda(), gpu_codes, scale.cuda(), std::nullopt, in, format, "wgmma");
      const auto cpu = bittorch::ops::packed_ternary_linear(x, cpu_codes, scale, std::nullopt, in, format, "auto");
      const auto cpu64 = cpu.to(torch::kDouble);
      const double error = ((gpu.cpu().to(torch::kDouble) - cpu64).abs() / cpu64.abs().amax(1, true).clamp_min(1.0))
                               .max()
                               .item<double>();
      EXPECT_LE(error, tolerance(torch::kBFloat16, format)) << what << " " << format;
    }
  };
  const auto first = codes_of();
  auto codes = first.cuda();
  expect_product_of(codes, first, "first codes");
  const auto second = codes_of();
  codes.copy_(second);  // in place: same tensor, same storage, next version
  expect_product_of(codes, second, "codes changed in place");
  const auto third = codes_of();
  expect_product_of(third.cuda(), third, "another tensor");
  {
    const auto stream = c10::cuda::getStreamFromPool();
    const c10::cuda::CUDAStreamGuard guard(stream);
    expect_product_of(codes, second, "the kept codes on another stream");
  }
  torch::Tensor inference_codes;
  {
    const c10::InferenceMode inference;
    inference_codes = first.cuda();
    expect_product_of(inference_codes, first, "an inference tensor");
    inference_codes.copy_(third);
    expect_product_of(inference_codes, third, "an inference tensor changed in place");
  }
}

// The tiled GEMM with enough tiles to fill the GPU without splitting K (every multiprocessor
// up to 140: 3 x 48 tiles of 128 rows x 128 features), partial tiles on both sides.
TEST(PackedLinearCuda, TiledWithoutSplitsMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(54);
  const int64_t rows = 300, in = 200, out = 6100;
  const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar));
  const auto scale = torch::rand({out}) + 0.1;
  const auto* device = at::cuda::getCurrentDeviceProperties();
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    for (const std::string format : {"none", "int8", "float8_e4m3"}) {
      if (format == "float8_e4m3" && device->major * 10 + device->minor < 89) continue;
      const auto bias = torch::randn({out}).to(dtype);
      const auto x = torch::randn({rows, in}).to(dtype);
      const auto cpu = bittorch::ops::packed_ternary_linear(x, packed, scale, bias, in, format);
      const auto gpu =
          bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), bias.cuda(), in, format, "tiled");
      const double magnitude = std::max(1.0, cpu.to(torch::kDouble).abs().max().item<double>());
      const double error = (gpu.cpu().to(torch::kDouble) - cpu.to(torch::kDouble)).abs().max().item<double>();
      EXPECT_LE(error, tolerance(dtype, format) * magnitude) << dtype << " " << format;
    }
  }
}

TEST(PackedLinearCuda, StridedAndMisalignedInputsGiveTheSameResults) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(52);
  const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {48, 256}, torch::kChar)).cuda();
  const auto scale = torch::rand({48}, torch::kCUDA) + 0.1;
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (const int64_t rows : {1, 20}) {
      const auto wide = torch::randn({rows, 257}, torch::TensorOptions(dtype).device(torch::kCUDA));
      const auto shifted = wide.narrow(1, 1, 256);  // rows 257 apart, first element 1 past alignment
      const auto transposed = wide.narrow(1, 0, 256).t().contiguous().t();
      const auto expected =
          bittorch::ops::packed_ternary_linear(shifted.contiguous(), packed, scale, std::nullopt, 256, "none");
      EXPECT_TRUE(torch::equal(bittorch::ops::packed_ternary_linear(shifted, packed, scale, std::nullopt, 256, "none"),
                               expected));
      const auto from_transposed =
          bittorch::ops::packed_ternary_linear(transposed, packed, scale, std::nullopt, 256, "none");
      const auto expected_transposed =
          bittorch::ops::packed_ternary_linear(transposed.contiguous(), packed, scale, std::nullopt, 256, "none");
      EXPECT_TRUE(torch::equal(from_transposed, expected_transposed));
    }
  }
}

TEST(PackedLinearCuda, PackingOnTheGpuEqualsTheCpu) {
  SKIP_WITHOUT_CUDA();
  const auto codes = torch::randint(-1, 2, {37, 83}, torch::kChar);
  const auto packed = bittorch::quant::pack_ternary(codes.cuda());
  EXPECT_TRUE(packed.is_cuda());
  EXPECT_TRUE(torch::equal(packed.cpu(), bittorch::quant::pack_ternary(codes)));
  EXPECT_TRUE(torch::equal(bittorch::quant::unpack_ternary(packed, 83).cpu(), codes));
  EXPECT_TRUE(torch::equal(bittorch::quant::pack_trits(codes.cuda()).cpu(), bittorch::quant::pack_trits(codes)));
}

TEST(PackedLinearCuda, PackedModelEqualsTheTernaryModelOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(51);
  for (const int64_t bits : {0, 8}) {
    torch::nn::Sequential model(bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(784, 256).quant(
                                    bittorch::quant::QuantConfig().activation_bits(bits))),
                                torch::nn::ReLU(),
                                bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(256, 10).quant(
                                    bittorch::quant::QuantConfig().activation_bits(bits))));
    model->to(torch::kCUDA);
    auto packed = bittorch::pack(model);
    for (const int64_t rows : {1, 16, 200}) {
      const auto x = torch::randn({rows, 784}, torch::kCUDA);
      const auto expected = model->forward(x);
      const auto actual = packed->forward(x);
      EXPECT_TRUE(actual.is_cuda());
      // With 8-bit activations the hidden layer's FP8 rounding may differ where the two
      // products round the first layer's output differently: compare loosely there.
      const double tolerance = bits == 0 ? 1e-4 : 5e-2;
      EXPECT_TRUE(torch::allclose(actual, expected, tolerance, tolerance)) << "bits " << bits << " rows " << rows;
    }
  }
}

TEST(PackedLinearCuda, SecondStreamGivesTheSameResults) {
  SKIP_WITHOUT_CUDA();
  const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {64, 128}, torch::kChar)).cuda();
  const auto scale = torch::rand({64}, torch::kCUDA);
  const auto x = torch::randn({4, 128}, torch::kCUDA);
  const auto on_default = bittorch::ops::packed_ternary_linear(x, packed, scale, std::nullopt, 128, "none");
  const auto stream = c10::cuda::getStreamFromPool();
  c10::cuda::CUDAStreamGuard guard(stream);
  const auto on_second = bittorch::ops::packed_ternary_linear(x, packed, scale, std::nullopt, 128, "none");
  EXPECT_TRUE(torch::equal(on_second, on_default));
}

// NaN and +-Inf inputs through every CUDA path (GEMV, small-batch and split tensor-core
// kernels, expanded operand): non-finite wherever the unpacked layer's output is, NaN wherever
// it is NaN (the tensor-core kernels may give NaN where it gives +-Inf: their codes carry an
// offset that an infinite input turns into Inf - Inf).
TEST(PackedLinearCuda, NonFiniteInputsPropagate) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(53);
  const int64_t in = 96, out = 40;
  const auto codes = torch::randint(-1, 2, {out, in}, torch::kChar);
  const auto packed = bittorch::quant::pack_ternary(codes);
  const auto scale = torch::rand({out}) + 0.1;
  const auto weight = codes.to(torch::kFloat) * scale.unsqueeze(1);
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const std::string format : {"none", "int8", "float8_e4m3"}) {
      for (const int64_t rows : {1, 3, 8, 16, 40, 100}) {
        auto x = torch::randn({rows, in});
        x[0][7] = std::nanf("");
        if (rows > 1) x[1][20] = INFINITY;
        if (rows > 2) x[2][95] = -INFINITY;
        x = x.to(dtype);
        const auto gpu =
            bittorch::ops::packed_ternary_linear(x.cuda(), packed.cuda(), scale.cuda(), std::nullopt, in, format)
                .cpu()
                .to(torch::kFloat);
        // The unpacked layer in float32: 8-bit activations make a non-finite row all NaN.
        auto expected = torch::matmul(x.to(torch::kFloat), weight.t());
        if (format != "none") expected.masked_fill_(torch::isfinite(x).all(1, true).logical_not(), NAN);
        const auto what = c10::str(dtype, " ", format, " rows ", rows);
        EXPECT_TRUE(torch::equal(torch::isfinite(gpu), torch::isfinite(expected))) << what << gpu.slice(0, 0, 3);
        EXPECT_TRUE(torch::isnan(gpu).logical_or(torch::isnan(expected).logical_not()).all().item<bool>()) << what;
        EXPECT_TRUE(torch::isnan(gpu[0]).all().item<bool>()) << what;
      }
    }
  }
}

// A strided bias (a view) is read element by element, not as if it were dense. Within the
// dtype's tolerance, not bit for bit: beyond the kernels' row counts cuBLAS adds a strided
// bias in another pass than a dense one.
TEST(PackedLinearCuda, StridedBias) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(54);
  const auto codes = torch::randint(-1, 2, {24, 64}, torch::kChar);
  const auto packed = bittorch::quant::pack_ternary(codes).cuda();
  const auto scale = (torch::rand({24}) + 0.1).cuda();
  for (const auto dtype : {torch::kFloat, torch::kHalf}) {
    const auto wide = torch::randn({48}).to(dtype).cuda();
    const auto strided = wide.slice(0, 0, 48, 2);
    ASSERT_FALSE(strided.is_contiguous());
    for (const int64_t rows : {1, 6, 20}) {
      const auto x = torch::randn({rows, 64}).to(dtype).cuda();
      const auto expected = bittorch::ops::packed_ternary_linear(x, packed, scale, strided.contiguous(), 64, "none");
      const double magnitude = std::max(1.0, expected.abs().max().item<double>());
      const double error = (bittorch::ops::packed_ternary_linear(x, packed, scale, strided, 64, "none") - expected)
                               .abs()
                               .max()
                               .item<double>();
      EXPECT_LE(error, tolerance(dtype, "none") * magnitude) << dtype << " rows " << rows;
    }
  }
}

// A packed language model loaded onto the GPU keeps its file's bfloat16 (embedding, norms,
// head; the packed projections keep their formats) and gives, bit for bit, the logits of the
// in-memory packed model cast to bfloat16 on the GPU; a KV-cache step runs in that dtype too.
TEST(PackedTransformerCuda, LoadsInTheFilesDtype) {
  SKIP_WITHOUT_CUDA();
  const auto options = bittorch::nn::TransformerOptions().layers(2).width(64).heads(2).context(32);
  torch::manual_seed(62);
  bittorch::nn::TransformerLM model(options);
  bittorch::nn::convert_to_ternary(*model, bittorch::quant::QuantConfig().activation_bits(8),
                                   bittorch::nn::is_transformer_projection);
  bittorch::nn::pack(*model);
  model->eval();
  bittorch::testing::TempDir dir;
  bittorch::io::save_packed(*model, dir.file("lm.btp"), torch::kBFloat16);
  auto loaded = bittorch::io::load_packed_transformer(dir.file("lm.btp"), torch::kCUDA);
  EXPECT_EQ(loaded->embedding->weight.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(loaded->embedding->weight.is_cuda());
  model->to(torch::kCUDA, torch::kBFloat16);
  const auto packed =
      model->blocks[0]->as<bittorch::nn::TransformerBlockImpl>()->attention->named_children()[0].value();
  EXPECT_EQ(packed->as<bittorch::nn::PackedTernaryLinear>()->scale.scalar_type(), torch::kFloat);
  const auto tokens = torch::randint(0, 256, {2, 12}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  torch::NoGradGuard no_grad;
  const auto logits = loaded->forward(tokens);
  EXPECT_EQ(logits.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(logits, model->forward(tokens)));
  auto cache = loaded->make_cache(2, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA));
  const auto step = loaded->decode_step(tokens.narrow(1, 0, 1), torch::zeros({1}, tokens.options()), cache);
  EXPECT_EQ(step.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(step.to(torch::kFloat), logits.narrow(1, 0, 1).to(torch::kFloat), 5e-2, 5e-2));
}

}  // namespace
