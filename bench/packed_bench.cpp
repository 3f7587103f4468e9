// bittorch-bench-packed: packed ternary inference (PackedTernaryLinear) against
// torch::nn::Linear, on one GPU against BF16 and on the CPU against FP32, in one run.
//
// GPU: for each (in, out) shape and batch M, the forward of a pure-BF16 torch::nn::Linear
// (cuBLAS) and of PackedTernaryLinear with BF16 activations and with INT8 activations. Each
// layer exists in enough copies that one pass over them moves more than twice the L2 size,
// and a CUDA graph replays forwards over the copies in turn (no launch overhead, no L2
// reuse); time per forward = graph time / forwards, median of --repeats. Bandwidth is the
// weight bytes read (2-bit codes and scales, or BF16 weights) per forward time.
// CPU (--cpu-shapes): batch 1, torch::nn::Linear in FP32 against PackedTernaryLinear with
// FP32 and INT8 activations, same threads (at::get_num_threads), wall-clock median.

#include <bittorch/bittorch.h>

#include "bench_common.h"

#include <ATen/Parallel.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/torch.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Median ms per forward of `forwards` calls of forward(i) captured in one CUDA graph.
double graph_ms_per_forward(const std::function<void(int)>& forward, int forwards, int repeats) {
  const auto stream = c10::cuda::getStreamFromPool();
  c10::cuda::CUDAStreamGuard guard(stream);
  for (int i = 0; i < forwards; ++i) forward(i);  // warm-up outside the graph
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  for (int i = 0; i < forwards; ++i) forward(i);
  graph.capture_end();
  graph.replay();
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record(stream);
    graph.replay();
    stop.record(stream);
    stop.synchronize();
    times.push_back(start.elapsed_time(stop) / forwards);
  }
  return median(times);
}

template <typename Body>
double wall_ms(Body&& body, int repeats) {
  for (int i = 0; i < 3; ++i) body();
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    body();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-bench-packed", "Packed ternary inference against torch::nn::Linear");
  // clang-format off
  options.add_options()
    ("rows", "GPU batch sizes M (comma-separated)", cxxopts::value<std::vector<int64_t>>()->default_value("1,4,16,64,256"))
    ("shapes", "GPU in x out shapes (comma-separated)", cxxopts::value<std::vector<std::string>>()->default_value("4096x4096,8192x8192,8192x28672"))
    ("cpu-shapes", "CPU in x out shapes at batch 1 (empty: no CPU part)", cxxopts::value<std::vector<std::string>>()->default_value("4096x4096,4096x11008"))
    ("repeats", "Timed repeats per figure (median)", cxxopts::value<int>()->default_value("20"))
    ("kernels", "Also time each CUDA kernel variant by name on BF16 activations (rows kernel_<name>)")
    ("kernel-activations", "The 8-bit format of --kernels' activations: none, int8 or float8_e4m3 (rows kernel_<name>_<format>)", cxxopts::value<std::string>()->default_value("none"))
    ("json", "Write the results to PATH", cxxopts::value<std::string>()->default_value(""))
    ("commit", "Commit to record in the JSON", cxxopts::value<std::string>()->default_value(""))
    ("h,help", "Print this help");
  // clang-format on
  return bittorch::bench::run_reporting_errors("bittorch-bench-packed", [&] {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    // The results file is checked before the long run, not after it.
    if (const auto path = args["json"].as<std::string>(); !path.empty())
      bittorch::io::check_writable_path(path, "--json");
    const int repeats = args["repeats"].as<int>();
    const auto kernel_format = args["kernel-activations"].as<std::string>();
    if (kernel_format != "none" && kernel_format != "int8" && kernel_format != "float8_e4m3")
      throw std::invalid_argument("--kernel-activations must be none, int8 or float8_e4m3, not " + kernel_format);
    if (repeats < 1) throw std::invalid_argument("--repeats must be >= 1");
    torch::NoGradGuard no_grad;
    nlohmann::json results = nlohmann::json::array();
    nlohmann::json doc = {{"torch", TORCH_VERSION}, {"commit", args["commit"].as<std::string>()}, {"repeats", repeats}};
    if (torch::cuda::is_available()) {
      const auto* props = at::cuda::getCurrentDeviceProperties();
      const auto l2_bytes = static_cast<int64_t>(props->l2CacheSize);
      doc["gpu"] = props->name;
      std::printf("%-6s %-12s %-16s %10s %8s %10s\n", "M", "in x out", "variant", "us", "x bf16", "TB/s");
      for (const auto& shape : args["shapes"].as<std::vector<std::string>>()) {
        const auto [in, out] = bittorch::bench::parse_shape(shape);
        torch::manual_seed(0);
        bittorch::nn::TernaryLinear trained(in, out);
        const int64_t bf16_bytes = in * out * 2;
        const int copies_bf16 = static_cast<int>(std::max<int64_t>(2, 2 * l2_bytes / bf16_bytes + 1));
        std::vector<torch::nn::Linear> dense;
        for (int i = 0; i < copies_bf16; ++i) {
          dense.emplace_back(in, out);
          dense.back()->to(torch::kCUDA, torch::kBFloat16);
        }
        bittorch::nn::PackedTernaryLinear first(*trained);
        const int64_t packed_bytes = first->weight_bytes();
        const int copies_packed = static_cast<int>(std::max<int64_t>(2, 2 * l2_bytes / packed_bytes + 1));
        std::vector<bittorch::nn::PackedTernaryLinear> packed;
        for (int i = 0; i < copies_packed; ++i) {
          packed.emplace_back(
              std::dynamic_pointer_cast<bittorch::nn::PackedTernaryLinearImpl>(first->clone(torch::kCUDA)));
        }
        for (const int64_t m : args["rows"].as<std::vector<int64_t>>()) {
          const auto x = torch::randn({m, in}, torch::TensorOptions(torch::kCUDA).dtype(torch::kBFloat16));
          const int forwards = 64;
          const auto time_packed = [&](int64_t bits) {
            for (auto& layer : packed) layer->options.quant().activation_bits(bits);
            return graph_ms_per_forward([&](int i) { packed[i % copies_packed](x); }, forwards, repeats);
          };
          const double base_ms = graph_ms_per_forward([&](int i) { dense[i % copies_bf16](x); }, forwards, repeats);
          std::vector<std::tuple<std::string, double, int64_t>> rows = {{"bf16_linear", base_ms, bf16_bytes},
                                                                        {"packed_bf16", time_packed(0), packed_bytes},
                                                                        {"packed_a8", time_packed(8), packed_bytes}};
          if (args.count("kernels") != 0) {
            // The biases in the activations' dtype, cast before the timed graphs.
            std::vector<torch::Tensor> biases;
            for (const auto& layer : packed) biases.push_back(layer->bias.to(torch::kBFloat16));
            for (const auto& kernel : bittorch::ops::packed_kernel_names(torch::kCUDA)) {
              // gemv takes float32 activations; mma at most 8 rows; wgmma no int8 ones.
              if (kernel == "auto" || kernel == "gemv" || (kernel == "mma" && m > 8) ||
                  (kernel == "wgmma" && kernel_format == "int8")) {
                continue;
              }
              const double ms = graph_ms_per_forward(
                  [&](int i) {
                    const auto& layer = packed[i % copies_packed];
                    bittorch::ops::packed_ternary_linear(x, layer->packed, layer->scale, biases[i % copies_packed], in,
                                                         kernel_format, kernel);
                  },
                  forwards, repeats);
              rows.emplace_back("kernel_" + kernel + (kernel_format == "none" ? "" : "_" + kernel_format), ms,
                                packed_bytes);
            }
          }
          for (const auto& [name, ms, bytes] : rows) {
            const double tbps = static_cast<double>(bytes) / (ms * 1e-3) / 1e12;
            std::printf("%-6lld %-12s %-16s %10.2f %8.2f %10.2f\n", static_cast<long long>(m), shape.c_str(),
                        name.c_str(), ms * 1e3, base_ms / ms, tbps);
            results.push_back({{"device", "cuda"},
                               {"rows", m},
                               {"in_features", in},
                               {"out_features", out},
                               {"variant", name},
                               {"forward_us", ms * 1e3},
                               {"speedup_vs_bf16", base_ms / ms},
                               {"weight_bytes", bytes},
                               {"weight_tb_per_s", tbps}});
          }
          std::fflush(stdout);
        }
      }
    }
    const int threads = at::get_num_threads();
    doc["cpu_threads"] = threads;
    std::printf("\nCPU, batch 1, %d threads\n%-12s %-16s %10s %8s\n", threads, "in x out", "variant", "us", "x fp32");
    for (const auto& shape : args["cpu-shapes"].as<std::vector<std::string>>()) {
      if (shape.empty()) continue;  // --cpu-shapes "": no CPU part
      const auto [in, out] = bittorch::bench::parse_shape(shape);
      torch::manual_seed(0);
      torch::nn::Linear dense(in, out);
      bittorch::nn::PackedTernaryLinear packed(*bittorch::nn::TernaryLinear(in, out));
      const auto x = torch::randn({1, in});
      const double base_ms = wall_ms([&] { dense(x); }, repeats);
      const auto time_packed = [&](int64_t bits) {
        packed->options.quant().activation_bits(bits);
        return wall_ms([&] { packed(x); }, repeats);
      };
      const std::vector<std::pair<std::string, double>> rows = {
          {"fp32_linear", base_ms}, {"packed_fp32", time_packed(0)}, {"packed_int8", time_packed(8)}};
      for (const auto& [name, ms] : rows) {
        std::printf("%-12s %-16s %10.1f %8.2f\n", shape.c_str(), name.c_str(), ms * 1e3, base_ms / ms);
        results.push_back({{"device", "cpu"},
                           {"threads", threads},
                           {"rows", 1},
                           {"in_features", in},
                           {"out_features", out},
                           {"variant", name},
                           {"forward_us", ms * 1e3},
                           {"speedup_vs_fp32", base_ms / ms}});
      }
    }
    if (const auto path = args["json"].as<std::string>(); !path.empty()) {
      doc["method"] =
          "GPU: CUDA graph of 64 forwards over layer copies holding > 2x L2, median of repeats; "
          "CPU: wall clock per forward, median of repeats, same threads";
      doc["results"] = results;
      bittorch::io::write_file_atomically(path, doc.dump(2) + "\n");
    }
    return 0;
  });
}
