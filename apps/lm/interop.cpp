// bittorch-lm import: a model from another project's format into a packed model file.

#include "common/cli.h"
#include "lm/commands.h"

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
                                                       cxxopts::value<std::string>())(
      "dtype", "Storage of the embedding, norms and head: bfloat16, float16 or float32",
      cxxopts::value<std::string>()->default_value("bfloat16"));
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    if (!args.count("hf") || !args.count("output")) throw UsageError("give --hf and --output");
    check_path_flags(args, {"output"}, {});
    const auto folder = args["hf"].as<std::string>(), output = args["output"].as<std::string>();
    const std::string dtype = choice_flag(args, "dtype", {"bfloat16", "float16", "float32"});
    auto model = io::import_hf_bitnet(folder);
    io::save_packed(*model, output,
                    dtype == "bfloat16"  ? torch::kBFloat16
                    : dtype == "float16" ? torch::kHalf
                                         : torch::kFloat);
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
