#pragma once

// What every BitTorch app does the same way: command-line parsing with usage errors,
// logging set-up, device selection and the top-level error handling.

#include <cxxopts.hpp>
#include <torch/types.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace bittorch::apps {

/// A bad flag value: reported with the usage line and exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TernaryRecipe;

/// Adds --scale-mode, --threshold-factor (with the app's own defaults) and --activation-bits.
void add_ternary_recipe_options(cxxopts::Options& options, const std::string& default_scale_mode,
                                double default_threshold_factor);
/// Reads them back; a bad value is a UsageError.
TernaryRecipe parse_ternary_recipe(const cxxopts::ParseResult& args);

/// Parses argv, prints --help and exits 0 when asked, then runs `body`. Usage errors exit
/// with 2 and the usage line, any other error (a c10::Error included) with 1 and its
/// message: never an uncaught exception.
int run_app(cxxopts::Options& options, int argc, char** argv,
            const std::function<int(const cxxopts::ParseResult&)>& body);

/// Sets spdlog's level from trace|debug|info|warn|error|critical|off.
void set_log_level(const std::string& level);

/// "cpu" or "cuda" (optionally "cuda:N"); a CUDA device without a GPU is a usage error.
torch::Device select_device(const std::string& name);

/// Whether stdout is a terminal (progress bars) rather than a file or pipe (log lines).
bool stdout_is_terminal();

/// Writes `contents` to `path` through a temporary file and a rename, so that an
/// interrupted run never leaves a half-written file.
void write_file_atomically(const std::string& path, const std::string& contents);

/// The size of the file at `path` in bytes; a c10::Error if it cannot be opened.
int64_t file_size_bytes(const std::string& path);

}  // namespace bittorch::apps
