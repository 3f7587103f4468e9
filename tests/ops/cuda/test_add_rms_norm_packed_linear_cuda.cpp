// bittorch::add_rms_norm_packed_linear on CUDA: the one-kernel path (at most 8 rows of
// float16 / bfloat16, the norm in the packed mma kernel's prologue; one and two tiles per
// warp; 16-bit rows and rows quantized to int8 or e4m3) and its fallbacks (more rows, rows too
// wide for shared memory, float32, a float32 norm weight) against the float64 reference and
// against add_rms_norm then packed_ternary_linear on the GPU; the sum equal to theirs; a CUDA
// graph replay equal to the eager call.

#include "ops/add_rms_norm_packed_linear_check.h"

#include <bittorch/bittorch.h>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>

namespace {

#define SKIP_WITHOUT_CUDA()                                                             \
  if (!torch::cuda::is_available()) {                                                   \
    GTEST_SKIP() << "no CUDA GPU on this machine: CUDA test skipped (run it on a GPU)"; \
  }

double tolerance(torch::Dtype dtype) {
  return dtype == torch::kFloat ? 1e-4 : dtype == torch::kHalf ? 4e-3 : 2e-2;
}

TEST(AddRmsNormPackedLinearCuda, MatchesTheReferenceAndTheTwoOps) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(61);
  const auto* device = at::cuda::getCurrentDeviceProperties();
  // out_features from which the mma kernel puts two tiles in a warp (mma.cu).
  const int64_t two_tiles = 6 * device->multiProcessorCount * 31 + 1;
  struct Shape {
    int64_t in, out;
  };
  // in: below a word, not whole words, the decode widths, wide rows (7 and more of 3072, 2 and
  // more of 16384 exceed the one kernel's shared memory); out: partial tiles, the two-tile
  // kernel.
  const std::vector<Shape> shapes = {{16, 1},     {40, 15},    {64, 16},    {100, 31},       {768, 2304},
                                     {3072, 768}, {768, 3072}, {16384, 40}, {768, two_tiles}};
  for (const auto dtype : {torch::kBFloat16, torch::kHalf, torch::kFloat}) {
    for (const auto& [in, out] : shapes) {
      const auto codes = torch::randint(-1, 2, {out, in}, torch::kChar);
      const auto packed = bittorch::quant::pack_ternary(codes).cuda();
      // Scales shrinking with the width, so that squared outputs stay within float16's range.
      const double shrink = 4.0 / std::sqrt(static_cast<double>(in));
      const auto scale = ((out % 2 == 0 ? torch::rand({out}) + 0.1 : torch::rand({1}) + 0.1) * shrink).cuda();
      for (const int64_t rows : {1, 2, 5, 8, 9}) {
        if (out == two_tiles && rows > 2) continue;  // the reference's product is large
        for (const bool squared_relu : {false, true}) {
          const auto bias = squared_relu ? torch::Tensor() : torch::randn({out}).to(dtype).cuda();
          const auto x = torch::randn({rows, in}).to(dtype).cuda(), r = torch::randn({rows, in}).to(dtype).cuda();
          const auto w = (torch::rand({in}) + 0.5).to(dtype).cuda();
          const std::string epilogue = squared_relu ? "squared_relu" : "none";
          const auto optional_bias = bias.defined() ? std::optional<torch::Tensor>(bias) : std::nullopt;
          const auto [output, sum] = bittorch::ops::add_rms_norm_packed_linear(x, r, w, 1e-6, packed, scale,
                                                                               optional_bias, in, "none", epilogue);
          const auto what = c10::str(dtype, " rows ", rows, " in ", in, " out ", out, " ", epilogue);
          const auto expected = bittorch::testing::reference_add_rms_norm_packed_linear(
              x.cpu(), r.cpu(), w.cpu(), 1e-6, codes, scale.cpu(), bias.defined() ? bias.cpu() : bias, squared_relu);
          bittorch::testing::expect_near_reference(output, expected.output, tolerance(dtype), what);
          // Against the two ops on the GPU: the same sum; outputs within the rounding of the
          // norm's output (its squares are summed in another order).
          const auto [normed, two_ops_sum] = bittorch::ops::add_rms_norm(x, r, w, 1e-6);
          const auto two_ops =
              bittorch::ops::packed_ternary_linear(normed, packed, scale, optional_bias, in, "none", "auto", epilogue);
          EXPECT_TRUE(torch::equal(sum, two_ops_sum)) << what;
          bittorch::testing::expect_near_reference(output, two_ops.cpu().to(torch::kDouble), tolerance(dtype), what);
        }
      }
    }
  }
}

// 8-bit activations: the normed rows quantized in the kernel's prologue (int8 and e4m3) against
// the float64 reference of the quantized rows and against the two ops. Where each row's sum
// holds only -1, 0 and +1 (its squares add exactly in any order), the normed rows, their
// quantization and the integer-valued products are the two ops' to the bit.
TEST(AddRmsNormPackedLinearCuda, EightBitRowsMatchTheReferenceAndTheTwoOps) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(64);
  const auto* device = at::cuda::getCurrentDeviceProperties();
  const int64_t two_tiles = 6 * device->multiProcessorCount * 31 + 1;
  struct Shape {
    int64_t in, out;
  };
  const std::vector<Shape> shapes = {{40, 15}, {64, 16}, {768, 2304}, {3072, 768}, {768, two_tiles}};
  for (const std::string format : {"int8", "float8_e4m3"}) {
    for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
      for (const auto& [in, out] : shapes) {
        const auto codes = torch::randint(-1, 2, {out, in}, torch::kChar);
        const auto packed = bittorch::quant::pack_ternary(codes).cuda();
        const double shrink = 4.0 / std::sqrt(static_cast<double>(in));
        const auto scale = ((torch::rand({out}) + 0.1) * shrink).cuda();
        for (const int64_t rows : {1, 3, 8, 9}) {
          if (out == two_tiles && rows > 3) continue;  // the reference's product is large
          for (const bool squared_relu : {false, true}) {
            for (const bool unit_sums : {false, true}) {
              const auto bias = squared_relu ? torch::Tensor() : torch::randn({out}).to(dtype).cuda();
              const auto optional_bias = bias.defined() ? std::optional<torch::Tensor>(bias) : std::nullopt;
              auto x = torch::randn({rows, in}), r = torch::randn({rows, in});
              if (unit_sums) {  // x + r in {-1, 0, +1}
                x = torch::randint(-1, 2, {rows, in}).to(torch::kFloat) * 0.5;
                r = torch::randint(-1, 2, {rows, in}).to(torch::kFloat) * 0.5;
              }
              x = x.to(dtype).cuda();
              r = r.to(dtype).cuda();
              const auto w = (torch::rand({in}) + 0.5).to(dtype).cuda();
              const std::string epilogue = squared_relu ? "squared_relu" : "none";
              const auto [output, sum] = bittorch::ops::add_rms_norm_packed_linear(x, r, w, 1e-6, packed, scale,
                                                                                   optional_bias, in, format, epilogue);
              const auto what = c10::str(format, " ", dtype, " rows ", rows, " in ", in, " out ", out, " ", epilogue,
                                         unit_sums ? " unit sums" : "");
              const auto expected = bittorch::testing::reference_add_rms_norm_quantized_linear(
                  x.cpu(), r.cpu(), w.cpu(), 1e-6, codes, scale.cpu(), bias.defined() ? bias.cpu() : bias, squared_relu,
                  format);
              // A normed element a rounding away from the reference's moves its 8-bit value by one.
              bittorch::testing::expect_near_reference(output, expected.output, 2 * tolerance(dtype), what);
              const auto [normed, two_ops_sum] = bittorch::ops::add_rms_norm(x, r, w, 1e-6);
              const auto two_ops = bittorch::ops::packed_ternary_linear(normed, packed, scale, optional_bias, in,
                                                                        format, "auto", epilogue);
              EXPECT_TRUE(torch::equal(sum, two_ops_sum)) << what;
              if (unit_sums) {
                EXPECT_TRUE(torch::equal(output, two_ops)) << what;
              } else {
                bittorch::testing::expect_near_reference(output, two_ops.cpu().to(torch::kDouble), 2 * tolerance(dtype),
                                                         what);
              }
            }
          }
        }
      }
    }
  }
}

TEST(AddRmsNormPackedLinearCuda, FallbacksGiveTheTwoOpsResults) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(62);
  const int64_t in = 64, out = 24;
  const auto codes = torch::randint(-1, 2, {out, in}, torch::kChar);
  const auto packed = bittorch::quant::pack_ternary(codes).cuda();
  const auto scale = (torch::rand({out}) + 0.1).cuda();
  const auto x = torch::randn({3, in}, torch::kBFloat16).cuda(), r = torch::randn({3, in}, torch::kBFloat16).cuda();
  // A float32 norm weight: the two ops.
  for (const std::string format : {"none", "int8"}) {
    const auto w = (torch::rand({in}) + 0.5).cuda();
    const auto [output, sum] =
        bittorch::ops::add_rms_norm_packed_linear(x, r, w, 1e-5, packed, scale, std::nullopt, in, format);
    const auto [normed, two_ops_sum] = bittorch::ops::add_rms_norm(x, r, w, 1e-5);
    EXPECT_TRUE(
        torch::equal(output, bittorch::ops::packed_ternary_linear(normed, packed, scale, std::nullopt, in, format)))
        << format;
    EXPECT_TRUE(torch::equal(sum, two_ops_sum)) << format;
  }
}

TEST(AddRmsNormPackedLinearCuda, AGraphReplayEqualsTheEagerCall) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(63);
  const int64_t in = 768, out = 2304;
  const auto packed = bittorch::quant::pack_ternary(torch::randint(-1, 2, {out, in}, torch::kChar)).cuda();
  const auto scale = (torch::rand({out}) + 0.1).cuda();
  const auto x = torch::randn({1, in}, torch::kBFloat16).cuda(), r = torch::randn({1, in}, torch::kBFloat16).cuda();
  const auto w = (torch::rand({in}) + 0.5).to(torch::kBFloat16).cuda();
  const auto call = [&] {
    return bittorch::ops::add_rms_norm_packed_linear(x, r, w, 1e-6, packed, scale, std::nullopt, in);
  };
  const auto [eager_output, eager_sum] = call();
  const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  const auto [output, sum] = call();
  graph.capture_end();
  output.zero_();
  sum.zero_();
  graph.replay();
  torch::cuda::synchronize();
  EXPECT_TRUE(torch::equal(output, eager_output));
  EXPECT_TRUE(torch::equal(sum, eager_sum));
}

}  // namespace
