#include "common/cli.h"

#include <bittorch/io/files.h>
#include <bittorch/train/device.h>
#include <bittorch/version.h>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>  // also the stderr sinks
#include <spdlog/spdlog.h>
#include <torch/headeronly/version.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace bittorch::apps {
namespace {

void set_log_level(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only "off" itself may mean off.
  if (parsed == spdlog::level::off && level != "off") {
    throw UsageError("--log-level must be trace, debug, info, warn, error, critical or off, not '" + level + "'");
  }
  spdlog::set_level(parsed);
}

std::string flag_text(const cxxopts::ParseResult& args, const std::string& name) {
  return args[name].as<std::string>();
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

}  // namespace

std::string embedded_data_dir(const std::string& name) {
  char executable[PATH_MAX];
  const ssize_t length = ::readlink("/proc/self/exe", executable, sizeof(executable) - 1);
  if (length > 0) {
    std::string bin(executable, static_cast<size_t>(length));
    bin = bin.substr(0, bin.rfind('/'));
    const std::string installed = bin.substr(0, bin.rfind('/')) + "/" + BITTORCH_INSTALLED_DATA_SUBDIR + "/" + name;
    if (is_directory(installed)) return installed;
  }
  return std::string(BITTORCH_SOURCE_DATA_DIR) + "/" + name;
}

void add_common_options(cxxopts::Options& options) {
  // clang-format off
  options.add_options()
    ("device", "cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("cpu"))
    ("cuda", "Same as --device cuda")
    ("threads", "CPU threads (0: LibTorch's default, one per core)", cxxopts::value<std::string>()->default_value("0"))
    ("log-level", "trace, debug, info, warn, error, critical or off (logs go to stderr)",
     cxxopts::value<std::string>()->default_value("info"))
    ("version", "Print the version and exit")
    ("h,help", "Print this help and exit");
  // clang-format on
}

std::string version_line(const std::string& program) {
  return fmt::format("{} (BitTorch {}, LibTorch {}.{}.{})", program, BITTORCH_VERSION, TORCH_VERSION_MAJOR,
                     TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
}

int run_app(cxxopts::Options& options, int argc, char** argv,
            const std::function<int(const cxxopts::ParseResult&)>& body) {
  // Logs (and progress) on stderr; stdout carries only the results.
  spdlog::set_default_logger(spdlog::stderr_color_mt("bittorch"));
  const auto usage = [&](const std::string& message) {
    std::cerr << options.program() << ": error: " << message << "\n"
              << "Usage: " << options.program() << " [OPTION...]  (" << options.program() << " --help lists them)\n";
    return 2;
  };
  // Fatal errors are printed directly, not logged: --log-level off must not hide them.
  const auto fatal = [&](const std::string& message) {
    std::cerr << options.program() << ": error: " << message << std::endl;
    return 1;
  };
  try {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    if (args.count("version")) {
      std::cout << version_line(options.program()) << std::endl;
      return 0;
    }
    if (!args.unmatched().empty()) return usage("unexpected argument '" + args.unmatched().front() + "'");
    set_log_level(args["log-level"].as<std::string>());
    try {
      train::set_threads(integer_flag(args, "threads", 0));
    } catch (const c10::Error& error) {
      throw UsageError(std::string("--") + error.what_without_backtrace());
    }
    return body(args);
  } catch (const cxxopts::exceptions::exception& error) {
    return usage(error.what());
  } catch (const UsageError& error) {
    return usage(error.what());
  } catch (const c10::Error& error) {
    return fatal(error.what_without_backtrace());
  } catch (const std::exception& error) {
    return fatal(error.what());
  }
}

torch::Device selected_device(const cxxopts::ParseResult& args) {
  const bool cuda = args.count("cuda") > 0;
  try {
    return train::parse_device(cuda ? "cuda" : flag_text(args, "device"));
  } catch (const c10::Error& error) {
    throw UsageError(std::string(cuda ? "--cuda: " : "--") + error.what_without_backtrace());
  }
}

std::shared_ptr<cxxopts::Value> text_flag(const char* default_value) {
  return cxxopts::value<std::string>()->default_value(default_value);
}

double number_flag(const cxxopts::ParseResult& args, const std::string& name) {
  const std::string text = flag_text(args, name);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || std::isspace(static_cast<unsigned char>(text[0]))) {
    throw UsageError("--" + name + ": '" + text + "' is not a number");
  }
  if (!std::isfinite(value) || errno == ERANGE)
    throw UsageError("--" + name + ": '" + text + "' is not a finite number");
  return value;
}

double positive_flag(const cxxopts::ParseResult& args, const std::string& name) {
  const double value = number_flag(args, name);
  if (!(value > 0)) throw UsageError("--" + name + " must be > 0, not " + flag_text(args, name));
  return value;
}

int64_t integer_flag(const cxxopts::ParseResult& args, const std::string& name, int64_t minimum) {
  const std::string text = flag_text(args, name);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error == std::errc::result_out_of_range) throw UsageError("--" + name + ": '" + text + "' is out of range");
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    throw UsageError("--" + name + ": '" + text + "' is not an integer");
  }
  if (value < minimum) throw UsageError("--" + name + " must be >= " + std::to_string(minimum) + ", not " + text);
  return value;
}

namespace {

// "a, b or c".
std::string listed(const std::vector<std::string>& choices) {
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i) {
    list += (i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ")) + choices[i];
  }
  return list;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string choice_flag(const cxxopts::ParseResult& args, const std::string& name,
                        const std::vector<std::string>& choices) {
  const std::string value = flag_text(args, name);
  if (contains(choices, value)) return value;
  throw UsageError("--" + name + " must be " + listed(choices) + ", not '" + value + "'");
}

std::vector<std::string> choices_flag(const cxxopts::ParseResult& args, const std::string& name,
                                      const std::vector<std::string>& choices) {
  const std::string value = flag_text(args, name);
  std::vector<std::string> chosen;
  std::stringstream names(value);
  for (std::string part; std::getline(names, part, ',');) {
    if (!contains(choices, part)) {
      throw UsageError("--" + name + " takes " + listed(choices) + " (comma-separated), not '" + value + "'");
    }
    if (!contains(chosen, part)) chosen.push_back(part);
  }
  if (chosen.empty()) throw UsageError("--" + name + " must name one of " + listed(choices) + ", not '" + value + "'");
  return chosen;
}

uint32_t tensor_crc32(const torch::Tensor& tensor) {
  const auto host = tensor.cpu().contiguous();
  return io::crc32(std::string_view(static_cast<const char*>(host.const_data_ptr()), host.nbytes()));
}

void check_path_flags(const cxxopts::ParseResult& args, const std::vector<std::string>& outputs,
                      const std::vector<std::string>& inputs,
                      const std::vector<std::pair<std::string, std::string>>& may_share) {
  const auto shared = [&](const std::string& a, const std::string& b) {
    return std::find(may_share.begin(), may_share.end(), std::make_pair(a, b)) != may_share.end() ||
           std::find(may_share.begin(), may_share.end(), std::make_pair(b, a)) != may_share.end();
  };
  // A path flag's value, "" when not given (some have no default).
  const auto given = [&](const std::string& name) {
    return args.count(name) > 0 ? args[name].as<std::string>() : std::string();
  };
  std::vector<std::pair<std::string, std::string>> seen;  // (flag, path) of the set flags so far
  for (const auto& name : inputs) {
    const std::string path = given(name);
    if (!path.empty()) seen.emplace_back(name, path);
  }
  for (const auto& name : outputs) {
    const std::string path = given(name);
    if (args.count(name) > 0 && path.empty()) throw UsageError("--" + name + ": the output path is empty");
    if (path.empty()) continue;
    try {
      io::check_writable_path(path, "--" + name);
    } catch (const c10::Error& error) {
      throw UsageError(error.what_without_backtrace());
    }
    for (const auto& [other_name, other_path] : seen) {
      if (!shared(name, other_name) && io::same_file(path, other_path)) {
        throw UsageError("--" + name + " and --" + other_name + " name the same file ('" + path + "' and '" +
                         other_path + "'): the output would replace it");
      }
    }
    seen.emplace_back(name, path);
  }
}

}  // namespace bittorch::apps
