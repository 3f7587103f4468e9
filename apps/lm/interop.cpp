// bittorch-lm import: a model from another project's format into a packed model file.

#include "common/cli.h"
#include "lm/commands.h"
#include "lm/lm_model.h"

#include <bittorch/bittorch.h>
#include <bittorch/io/hf_bitnet.h>

#include <spdlog/spdlog.h>

#include <filesystem>

namespace bittorch::apps {

int import_command(int argc, char** argv) {
  cxxopts::Options options("bittorch-lm import",
                           "Convert a Hugging Face BitNet checkpoint folder into a packed model file");
  options.add_options()("hf", "A folder of config.json and *.safetensors (transformers' model type bitnet)",
                        cxxopts::value<std::string>())("output", "The packed model file to write",
                                                       cxxopts::value<std::string>());
  add_storage_dtype_option(options);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    if (!args.count("hf") || !args.count("output")) throw UsageError("give --hf and --output");
    check_path_flags(args, {"output"}, {});
    const auto folder = args["hf"].as<std::string>(), output = args["output"].as<std::string>();
    const auto dtype = storage_dtype(args);
    auto model = io::import_hf_bitnet(folder);
    io::save_packed(*model, output, dtype);
    spdlog::info("imported {} ({}) into {} ({} bytes)", folder, nn::to_json(model->options), output,
                 io::regular_file_size(output));
    if (const auto tokenizer = std::filesystem::path(folder) / "tokenizer.json"; std::filesystem::exists(tokenizer)) {
      spdlog::info("sample it with its tokenizer: bittorch-lm sample --packed {} --tokenizer {}", output,
                   tokenizer.string());
    }
    return 0;
  });
}

}  // namespace bittorch::apps
