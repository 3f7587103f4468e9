// bittorch-lm sample and export: a trained model from its checkpoint (ternary projections
// packed, as deployed) or from a packed model file.

#include "common/cli.h"
#include "lm/commands.h"
#include "lm/lm_model.h"

#include <bittorch/io/gguf.h>
#include <bittorch/io/hf_bitnet.h>
#include <bittorch/train.h>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

namespace bittorch::apps {
namespace {

// The model of the checkpoint at `path` on the CPU, in eval mode, ternary projections packed.
nn::TransformerLM model_from_checkpoint(const std::string& path) {
  const auto metadata = train::read_checkpoint_metadata(path);
  // Another app's checkpoint: say what it holds, in a line.
  if (!metadata.settings.contains("model")) {
    const auto& layers = metadata.model.contains("layers") ? metadata.model["layers"] : nlohmann::json::array();
    TORCH_CHECK(false, "checkpoint '", path, "' holds no bittorch-lm model but a ", metadata.model.value("kind", "?"),
                " model of ", layers.size(), " layers",
                metadata.settings.contains("dataset") ? " trained on images (bittorch-mnist's: use --load there)" : "");
  }
  nn::TransformerOptions options;
  std::string kind;
  std::optional<quant::QuantConfig> ternary;
  try {
    options = nn::transformer_options_from_json(metadata.settings.at("model").dump());
    nn::check_transformer_options(options);
    kind = metadata.model.at("kind").get<std::string>();
    if (kind == "ternary") {
      // Checkpoints before the quantization was recorded whole hold its activation bits alone.
      const auto& settings = metadata.settings;
      ternary = settings.contains("quant") ? quant::quant_config_from_json(settings.at("quant").dump())
                                           : bitnet_config(settings.at("activation_bits").get<int64_t>());
    }
  } catch (const std::exception& error) {
    const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
    throw c10::Error({__func__, __FILE__, __LINE__},
                     "checkpoint '" + path + "' holds no bittorch-lm model (" +
                         (c10_error != nullptr ? c10_error->what_without_backtrace() : error.what()) + ")");
  }
  TORCH_CHECK(kind == "fp" || kind == "ternary", "checkpoint '", path, "' holds a model of kind '", kind,
              "', not one of bittorch-lm");
  auto model = make_lm(options, ternary);
  train::load_checkpoint(path, *model, nullptr, train::describe_model(*model, kind), torch::kCPU);
  model->eval();
  if (ternary) nn::pack(*model);
  return model;
}

void add_source_options(cxxopts::Options& options) {
  options.add_options()("checkpoint", "A checkpoint of bittorch-lm train (--save)", cxxopts::value<std::string>())(
      "packed", "A packed model file (bittorch-lm export, or train --export)", cxxopts::value<std::string>());
}

// The model --checkpoint or --packed names, on `device`: a packed file in the dtype it stores
// (io::load_packed_transformer), a checkpoint's model in float32.
nn::TransformerLM load_model(const cxxopts::ParseResult& args, torch::Device device) {
  const bool checkpoint = args.count("checkpoint") > 0, packed = args.count("packed") > 0;
  if (checkpoint == packed) throw UsageError("give one of --checkpoint and --packed");
  if (packed) return io::load_packed_transformer(args["packed"].as<std::string>(), device);
  auto model = model_from_checkpoint(args["checkpoint"].as<std::string>());
  model->to(device);
  return model;
}

}  // namespace

int sample_command(int argc, char** argv) {
  cxxopts::Options options("bittorch-lm sample", "Generate text from a trained byte-level language model");
  add_source_options(options);
  // clang-format off
  options.add_options()
    ("prompt", "The text to continue", text_flag("\n"))
    ("tokens", "Tokens to generate (bytes, without --tokenizer)", text_flag("300"))
    ("tokenizer", "A Hugging Face tokenizer.json (byte-level BPE) to encode and decode text with, for a model "
                  "of its vocabulary (one imported with import --hf); default: bytes", cxxopts::value<std::string>())
    ("temperature", "Softmax temperature (0: the most likely byte each time)", text_flag("0.8"))
    ("top-k", "Sample among the k most likely bytes (0: all)", text_flag("40"))
    ("seed", "Sampler seed: the same seed gives the same text on the same device", text_flag("0"))
    ("batch", "Continuations of the prompt to generate at once (printed one after another, each after a "
              "line '--- N')", text_flag("1"));
  // clang-format on
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    const auto generate_options = nn::GenerateOptions()
                                      .max_new_tokens(integer_flag(args, "tokens", 0))
                                      .temperature(number_flag(args, "temperature"))
                                      .top_k(integer_flag(args, "top-k", 0))
                                      .seed(static_cast<uint64_t>(integer_flag(args, "seed", 0)));
    if (generate_options.temperature() < 0) throw UsageError("--temperature must be >= 0");
    const int64_t batch = integer_flag(args, "batch", 1);
    if (generate_options.max_new_tokens() > kMaxGeneratedBytes) {
      throw UsageError("--tokens must be at most " + std::to_string(kMaxGeneratedBytes) + ", not " +
                       std::to_string(generate_options.max_new_tokens()));
    }
    const std::string prompt = args["prompt"].as<std::string>();
    if (prompt.empty()) throw UsageError("--prompt must not be empty");
    check_path_flags(args, {}, {"tokenizer"});
    std::optional<io::Tokenizer> tokenizer;
    if (args.count("tokenizer")) tokenizer = io::Tokenizer::from_file(args["tokenizer"].as<std::string>());
    auto model = load_model(args, selected_device(args));
    // Without a tokenizer text goes in and out as bytes: a model of another vocabulary (one
    // imported from Hugging Face) would read them as other tokens, or fail on an index.
    const int64_t vocab = model->options.vocab_size();
    if (tokenizer) {
      TORCH_CHECK(tokenizer->vocab_size() <= vocab, "--tokenizer has ", tokenizer->vocab_size(),
                  " tokens, more than the model's vocabulary of ", vocab);
    } else {
      TORCH_CHECK(vocab == 256, "the model has a vocabulary of ", vocab,
                  " tokens, not the 256 bytes bittorch-lm sample encodes text as: give its tokenizer "
                  "(--tokenizer tokenizer.json)");
    }
    const auto texts = continue_text(*model, prompt, generate_options, tokenizer ? &*tokenizer : nullptr, batch);
    for (size_t i = 0; i < texts.size(); ++i) {
      if (texts.size() > 1) std::cout << "--- " << i + 1 << "\n";
      std::cout << texts[i] << std::endl;
    }
    return 0;
  });
}

int export_command(int argc, char** argv) {
  cxxopts::Options options("bittorch-lm export",
                           "Write a trained model as a packed model file, a Hugging Face BitNet checkpoint or a "
                           "GGUF file for llama.cpp");
  add_source_options(options);
  // clang-format off
  options.add_options()
    ("output", "The packed model file to write", cxxopts::value<std::string>())
    ("hf", "Instead, a folder to write config.json and model.safetensors into (transformers' model type bitnet)",
     cxxopts::value<std::string>())
    ("gguf", "Instead, a GGUF file for llama.cpp's bitnet architecture (ternary projections as TQ2_0)",
     cxxopts::value<std::string>())
    ("tokenizer", "With --gguf: the model's tokenizer.json, whose vocabulary the file records (default: the "
                  "256 bytes)", cxxopts::value<std::string>());
  // clang-format on
  add_storage_dtype_option(options);
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    if (args.count("output") + args.count("hf") + args.count("gguf") != 1) {
      throw UsageError("give --checkpoint or --packed, and one of --output, --hf and --gguf");
    }
    if (args.count("tokenizer") && !args.count("gguf")) throw UsageError("--tokenizer goes with --gguf");
    check_path_flags(args, {"output", "gguf"}, {"checkpoint", "packed", "tokenizer"});
    const auto source =
        args.count("checkpoint") ? args["checkpoint"].as<std::string>() : args["packed"].as<std::string>();
    const auto dtype = storage_dtype(args);
    auto model = load_model(args, torch::kCPU);
    if (args.count("hf")) {
      const auto folder = args["hf"].as<std::string>();
      io::export_hf_bitnet(*model, folder, dtype);
      spdlog::info("exported {} to the Hugging Face folder {}", source, folder);
      return 0;
    }
    if (args.count("gguf")) {
      const auto file = args["gguf"].as<std::string>();
      std::optional<io::Tokenizer> tokenizer;
      if (args.count("tokenizer")) tokenizer = io::Tokenizer::from_file(args["tokenizer"].as<std::string>());
      io::export_gguf_bitnet(*model, file, tokenizer ? &*tokenizer : nullptr, dtype);
      spdlog::info("exported {} to {} ({} bytes)", source, file, io::regular_file_size(file));
      return 0;
    }
    const auto output = args["output"].as<std::string>();
    io::save_packed(*model, output, dtype);
    spdlog::info("exported {} to {} ({} bytes)", source, output, io::regular_file_size(output));
    return 0;
  });
}

}  // namespace bittorch::apps
