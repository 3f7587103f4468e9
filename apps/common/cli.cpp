#include "common/cli.h"

#include "common/models.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace bittorch::apps {

int run_app(cxxopts::Options& options, int argc, char** argv,
            const std::function<int(const cxxopts::ParseResult&)>& body) {
  const auto usage = [&](const std::string& message) {
    std::cerr << options.program() << ": error: " << message << "\n"
              << "Usage: " << options.program() << " [OPTION...]  (" << options.program()
              << " --help lists them)\n";
    return 2;
  };
  try {
    const auto parsed = options.parse(argc, argv);
    if (parsed.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    if (!parsed.unmatched().empty()) {
      return usage("unexpected argument '" + parsed.unmatched().front() + "'");
    }
    return body(parsed);
  } catch (const cxxopts::exceptions::exception& error) {
    return usage(error.what());
  } catch (const UsageError& error) {
    return usage(error.what());
  } catch (const c10::Error& error) {
    spdlog::error("{}", error.what_without_backtrace());
  } catch (const std::exception& error) {
    spdlog::error("{}", error.what());
  }
  return 1;
}

void add_ternary_recipe_options(cxxopts::Options& options, const std::string& default_scale_mode,
                                double default_threshold_factor) {
  options.add_options()(
      "scale-mode", "Ternary scale mode: max or absmean",
      cxxopts::value<std::string>()->default_value(default_scale_mode))(
      "threshold-factor", "Ternary threshold factor (max scale mode), in [0, 1]",
      cxxopts::value<double>()->default_value(fmt::format("{}", default_threshold_factor)))(
      "activation-bits", "Ternary layers' activations: 0 (unquantized) or 8 (FP8 on CUDA sm_89+, else INT8)",
      cxxopts::value<int64_t>()->default_value("0"));
}

TernaryRecipe parse_ternary_recipe(const cxxopts::ParseResult& args) {
  TernaryRecipe recipe;
  recipe.threshold_factor = args["threshold-factor"].as<double>();
  if (!(recipe.threshold_factor >= 0 && recipe.threshold_factor <= 1)) {
    throw UsageError("--threshold-factor must be in [0, 1]");
  }
  const auto scale_mode = args["scale-mode"].as<std::string>();
  if (scale_mode != "max" && scale_mode != "absmean") {
    throw UsageError("--scale-mode must be max or absmean, not '" + scale_mode + "'");
  }
  recipe.scale_mode = quant::scale_mode_from_string(scale_mode);
  recipe.activation_bits = args["activation-bits"].as<int64_t>();
  if (recipe.activation_bits != 0 && recipe.activation_bits != 8) {
    throw UsageError("--activation-bits must be 0 or 8, not " + std::to_string(recipe.activation_bits));
  }
  return recipe;
}

void set_log_level(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only "off" itself may mean off.
  if (parsed == spdlog::level::off && level != "off") {
    throw UsageError("--log-level must be trace, debug, info, warn, error, critical or off, not '" +
                     level + "'");
  }
  spdlog::set_level(parsed);
}

torch::Device select_device(const std::string& name) {
  if (name != "cpu" && name.rfind("cuda", 0) != 0) {
    throw UsageError("--device must be cpu or cuda, not '" + name + "'");
  }
  std::optional<torch::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error&) {
    throw UsageError("--device must be cpu or cuda, not '" + name + "'");
  }
  if (device->is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw UsageError("a CUDA device was asked for (--cuda or --device " + name +
                       "), but no CUDA GPU is available");
    }
    if (device->has_index() &&
        device->index() >= static_cast<int>(torch::cuda::device_count())) {
      throw UsageError("--device " + name + ": only " +
                       std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
    }
  }
  return *device;
}

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

void write_file_atomically(const std::string& path, const std::string& contents) {
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) {
      std::remove(temporary.c_str());
      throw std::runtime_error("cannot write " + path);
    }
  }
  std::filesystem::rename(temporary, path);
}

int64_t file_size_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  TORCH_CHECK(in, "cannot open '", path, "'");
  return static_cast<int64_t>(in.tellg());
}

}  // namespace bittorch::apps
