#pragma once

// What every BitTorch app does the same way: command-line parsing with usage errors that
// name the flag, the flags every app shares (--device/--cuda, --threads, --log-level,
// --version, --help), logging to stderr, output-path checks and the top-level error handling.

#include <torch/types.h>
#include <cxxopts.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bittorch::apps {

/// A bad flag value: reported with the usage line and exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Adds the flags every app has: --device cpu|cuda[:N] (default cpu), --cuda (= --device
/// cuda), --threads N (CPU threads; default: LibTorch's, one per core), --log-level, --version
/// and --help.
void add_common_options(cxxopts::Options& options);

/// What --version prints: "PROGRAM (BitTorch X.Y.Z, LibTorch X.Y.Z)".
std::string version_line(const std::string& program);

/// Parses argv, answers --help and --version (stdout, exit 0), sets the log level (logs go to
/// stderr) and the thread count, then runs `body`. Usage errors exit with 2 and the usage line,
/// any other error (a c10::Error included) with 1 and its message on stderr, also with
/// --log-level off: never an uncaught exception.
int run_app(cxxopts::Options& options, int argc, char** argv,
            const std::function<int(const cxxopts::ParseResult&)>& body);

/// The device --device or --cuda asks for; a CUDA device without a GPU is a usage error.
torch::Device selected_device(const cxxopts::ParseResult& args);

/// A string flag's value with `default_value` (flags are read back by the parsers below).
std::shared_ptr<cxxopts::Value> text_flag(const char* default_value);

/// --name as a finite number; "--name: 'abc' is not a number" otherwise.
double number_flag(const cxxopts::ParseResult& args, const std::string& name);
/// --name as a number > 0.
double positive_flag(const cxxopts::ParseResult& args, const std::string& name);
/// --name as an integer >= minimum; "--name: '1.5' is not an integer" or "--name must be >= 1,
/// not 0" otherwise.
int64_t integer_flag(const cxxopts::ParseResult& args, const std::string& name, int64_t minimum);
/// --name as a string, one of `choices`; "--name must be a or b, not 'c'" otherwise.
std::string choice_flag(const cxxopts::ParseResult& args, const std::string& name,
                        const std::vector<std::string>& choices);
/// --name as a comma-separated list of `choices`, each once, in the order given; at least one.
/// "--name takes a, b or c (comma-separated), not 'x'" otherwise.
std::vector<std::string> choices_flag(const cxxopts::ParseResult& args, const std::string& name,
                                      const std::vector<std::string>& choices);

/// The data set `name` the project embeds (data/<name>): installed beside the executable
/// (<prefix>/share/bittorch/<name> for <prefix>/bin/app), else the source checkout's (a build
/// tree).
std::string embedded_data_dir(const std::string& name);

/// The CRC-32 of a tensor's bytes (on any device): the digest of a data set that a resumed run
/// compares.
uint32_t tensor_crc32(const torch::Tensor& tensor);

/// Checks, before any work starts, every output path flag among `outputs` that is set
/// (bittorch::io::check_writable_path: not a directory or device, its directory exists and is
/// writable) and that none names the same file (bittorch::io::same_file: through any symbolic
/// or hard link, or the same place for a file still to come) as another output or as an
/// input path flag among `inputs`, except the pairs of `may_share` (an output and the input
/// it continues, --save and --resume). A clash is a UsageError naming both flags: a run's
/// results and the user's files are never lost to a bad path.
void check_path_flags(const cxxopts::ParseResult& args, const std::vector<std::string>& outputs,
                      const std::vector<std::string>& inputs = {},
                      const std::vector<std::pair<std::string, std::string>>& may_share = {});

}  // namespace bittorch::apps
