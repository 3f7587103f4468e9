// bittorch-bench: TernaryLinear against torch::nn::Linear on one GPU, in one run.
//
// For each rows M and (in, out) shape: the forward alone (no grad) and a training step
// (forward + backward, weight quantization included) of
//   bf16_autocast  torch::nn::Linear, FP32 parameters under BF16 autocast (the baseline)
//   bf16           torch::nn::Linear in pure BF16
//   fp32           torch::nn::Linear in FP32
//   ternary        bittorch::nn::TernaryLinear, FP32 master weights under BF16 autocast
//   ternary_a8     the same with activation_bits(8) (FP8 e4m3 on sm_89+, INT8 on sm_80)
//   ternary_a8_g8  ternary_a8 with gradient_bits(8): grad_input from FP8 e5m2 gradients
//   ternary_kept, ternary_a8_kept  the forward inside a KeepQuantizedWeights scope (the
//                  weight quantized once, as in evaluation and generation)
// Method: CUDA events around each repeat, warm-up first, L2 flushed (a buffer twice the L2
// size overwritten) before each repeat, median of --repeats. Ratios are time / baseline
// time measured in the same run. Prints a table and writes JSON.

#include <bittorch/bittorch.h>
#include <bittorch/train/autocast.h>

#include "bench_common.h"

#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <cuda_runtime.h>
#include <torch/torch.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>

namespace {

struct Variant {
  std::string name;
  bool autocast;
  torch::Dtype param_dtype;
  bool ternary;
  int64_t activation_bits = 0;
  int64_t gradient_bits = 0;
  // The forward timed inside one KeepQuantizedWeights scope (evaluation, generation): the
  // weight quantized once. Its training step is timed as the others' (quantized every step).
  bool keep_weights = false;
};

const std::vector<Variant> kVariants = {
    {"bf16_autocast", true, torch::kFloat, false},
    {"bf16", false, torch::kBFloat16, false},
    {"fp32", false, torch::kFloat, false},
    {"ternary", true, torch::kFloat, true},
    {"ternary_a8", true, torch::kFloat, true, 8},
    {"ternary_a8_g8", true, torch::kFloat, true, 8, 8},
    {"ternary_kept", true, torch::kFloat, true, 0, 0, true},
    {"ternary_a8_kept", true, torch::kFloat, true, 8, 0, true},
};

double median_ms(const std::function<void()>& body, int warmup, int repeats, torch::Tensor& flush) {
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> times;
  const auto stream = at::cuda::getCurrentCUDAStream();
  for (int i = 0; i < repeats; ++i) {
    flush.zero_();
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record(stream);
    body();
    stop.record(stream);
    stop.synchronize();
    times.push_back(start.elapsed_time(stop));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-bench", "TernaryLinear against torch::nn::Linear on one GPU");
  // clang-format off
  options.add_options()
    ("rows", "Rows M (comma-separated)", cxxopts::value<std::vector<int64_t>>()->default_value("1,16,256,4096,16384"))
    ("shapes", "in x out shapes (comma-separated)", cxxopts::value<std::vector<std::string>>()->default_value("4096x4096,4096x11008,11008x4096,8192x8192"))
    ("repeats", "Timed repeats per figure (median)", cxxopts::value<int>()->default_value("20"))
    ("warmup", "Untimed repeats first", cxxopts::value<int>()->default_value("3"))
    ("json", "Write the results to PATH", cxxopts::value<std::string>()->default_value(""))
    ("commit", "Commit to record in the JSON", cxxopts::value<std::string>()->default_value(""))
    ("h,help", "Print this help");
  // clang-format on
  return bittorch::bench::run_reporting_errors("bittorch-bench", [&] {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    if (!torch::cuda::is_available()) {
      std::cerr << "bittorch-bench: no CUDA GPU available\n";
      return 1;
    }
    // The results file is checked before the long run, not after it.
    if (const auto path = args["json"].as<std::string>(); !path.empty())
      bittorch::io::check_writable_path(path, "--json");
    const int repeats = args["repeats"].as<int>(), warmup = args["warmup"].as<int>();
    if (repeats < 1 || warmup < 0) throw std::invalid_argument("--repeats >= 1 and --warmup >= 0");
    const torch::Device device(torch::kCUDA);
    const auto* props = at::cuda::getCurrentDeviceProperties();
    int driver = 0;
    cudaDriverGetVersion(&driver);
    auto flush = torch::empty({2 * static_cast<int64_t>(props->l2CacheSize) / 4},
                              torch::TensorOptions(device).dtype(torch::kFloat));

    nlohmann::json results = nlohmann::json::array();
    std::printf("%-6s %-12s %-14s %12s %12s %9s\n", "M", "in x out", "variant", "forward ms", "train ms", "fwd/trn x");
    for (const auto& shape : args["shapes"].as<std::vector<std::string>>()) {
      const auto [in, out] = bittorch::bench::parse_shape(shape);
      for (const int64_t m : args["rows"].as<std::vector<int64_t>>()) {
        double base_fwd = 0, base_train = 0;
        for (const auto& variant : kVariants) {
          torch::manual_seed(0);
          std::shared_ptr<torch::nn::Module> layer;
          std::function<torch::Tensor(const torch::Tensor&)> forward;
          if (variant.ternary) {
            bittorch::nn::TernaryLinear t(
                bittorch::nn::TernaryLinearOptions(in, out).quant(bittorch::quant::QuantConfig()
                                                                      .activation_bits(variant.activation_bits)
                                                                      .gradient_bits(variant.gradient_bits)));
            layer = t.ptr();
            forward = [t](const torch::Tensor& x) mutable { return t(x); };
          } else {
            torch::nn::Linear l(in, out);
            layer = l.ptr();
            forward = [l](const torch::Tensor& x) mutable { return l(x); };
          }
          layer->to(device, variant.param_dtype);
          const auto input_dtype = variant.autocast ? torch::kBFloat16 : variant.param_dtype;
          const auto x = torch::randn({m, in}, torch::TensorOptions(device).dtype(input_dtype)).requires_grad_();
          std::optional<bittorch::nn::KeepQuantizedWeights> keep;
          if (variant.keep_weights) keep.emplace();
          const auto fwd_ms = median_ms(
              [&] {
                torch::NoGradGuard no_grad;
                bittorch::train::AutocastScope autocast(torch::kCUDA, variant.autocast);
                forward(x);
              },
              warmup, repeats, flush);
          keep.reset();
          const auto train_ms = median_ms(
              [&] {
                for (auto& p : layer->parameters()) p.mutable_grad().reset();
                x.mutable_grad().reset();
                torch::Tensor y;
                {
                  bittorch::train::AutocastScope autocast(torch::kCUDA, variant.autocast);
                  y = forward(x);
                }
                y.backward(torch::ones_like(y));
              },
              warmup, repeats, flush);
          if (variant.name == "bf16_autocast") {
            base_fwd = fwd_ms;
            base_train = train_ms;
          }
          std::printf("%-6lld %-12s %-14s %12.4f %12.4f %4.2f/%4.2f\n", static_cast<long long>(m), shape.c_str(),
                      variant.name.c_str(), fwd_ms, train_ms, fwd_ms / base_fwd, train_ms / base_train);
          std::fflush(stdout);
          results.push_back({{"rows", m},
                             {"in_features", in},
                             {"out_features", out},
                             {"variant", variant.name},
                             {"forward_ms", fwd_ms},
                             {"train_step_ms", train_ms},
                             {"forward_ratio_to_bf16_autocast", fwd_ms / base_fwd},
                             {"train_step_ratio_to_bf16_autocast", train_ms / base_train}});
        }
      }
    }
    if (const auto path = args["json"].as<std::string>(); !path.empty()) {
      const nlohmann::json doc = {
          {"gpu", props->name},
          {"cuda_driver_version", driver},
          {"torch", TORCH_VERSION},
          {"commit", args["commit"].as<std::string>()},
          {"repeats", repeats},
          {"warmup", warmup},
          {"method",
           "CUDA events per repeat, L2 flushed before each, median; ratios against bf16_autocast in the same run"},
          {"results", results}};
      bittorch::io::write_file_atomically(path, doc.dump(2) + "\n");
    }
    return 0;
  });
}
