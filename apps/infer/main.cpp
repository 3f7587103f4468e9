// bittorch-infer: evaluates a packed model file (bittorch-mnist --export) on the MNIST or
// Fashion-MNIST test set and prints its accuracy, its file size and its weight memory
// against FP32.

#include "common/cli.h"
#include "common/evaluation.h"

#include <bittorch/bittorch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

using namespace bittorch::apps;

int main(int argc, char** argv) {
  cxxopts::Options options("bittorch-infer", "Evaluate a packed ternary model file (bittorch-mnist --export)");
  // clang-format off
  options.add_options()
    ("model", "Packed model file (required)", text_flag(""))
    ("dataset", "mnist or fashion-mnist", text_flag("mnist"))
    ("data-dir", "Directory with the test IDX files (default: the embedded MNIST, or the Debian Fashion-MNIST)", text_flag(""))
    ("test-limit", "Use only the first N test images (0: all)", text_flag("0"));
  // clang-format on
  add_common_options(options);
  return run_app(options, argc, argv, [](const cxxopts::ParseResult& args) {
    const auto path = args["model"].as<std::string>();
    if (path.empty()) throw UsageError("--model PATH is required");
    const auto dataset = choice_flag(args, "dataset", {"mnist", "fashion-mnist"});
    const auto data_dir =
        args["data-dir"].as<std::string>().empty() ? default_data_dir(dataset) : args["data-dir"].as<std::string>();
    const int64_t limit = integer_flag(args, "test-limit", 0);
    const auto device = selected_device(args);

    // A language model's file (its root describes a TransformerLM) is bittorch-lm's to run.
    bool language_model = false;
    try {
      const auto root = bittorch::io::read_packed_numbers(path);
      bittorch::nn::transformer_from_numbers(root.ints, root.reals);
      language_model = true;
    } catch (const c10::Error&) {
      // not a language model (or not a valid file): load_packed says what it is
    }
    TORCH_CHECK(!language_model, "'", path,
                "' holds a language model, not a classifier: generate text with it by "
                "bittorch-lm sample --packed ",
                path);
    auto model = bittorch::io::load_packed(path);
    // Weight bytes in FP32, in memory (2-bit codes + scales) and in the file (1.6-bit codes + scales).
    int64_t fp32_bytes = 0, packed_bytes = 0, file_weight_bytes = 0, layers = 0;
    for (const auto& child : model->children()) {
      if (const auto* layer = child->as<bittorch::nn::PackedTernaryLinearImpl>()) {
        fp32_bytes += layer->options.in_features() * layer->options.out_features() * 4;
        packed_bytes += layer->weight_bytes();
        file_weight_bytes +=
            (layer->options.in_features() * layer->options.out_features() + 4) / 5 + layer->scale.numel() * 4;
        ++layers;
      }
    }
    TORCH_CHECK(layers > 0, "'", path, "' holds no packed ternary layer: not a model bittorch-mnist --export wrote");
    model->to(device);
    const auto test = load_split(dataset, data_dir, IdxDataset::Split::Test, limit, device);
    // The model must map an image to the ten classes' scores; anything else is no MNIST model.
    torch::Tensor scores;
    try {
      torch::NoGradGuard no_grad;
      scores = model->forward(test.inputs.narrow(0, 0, 1));
    } catch (const c10::Error& error) {
      TORCH_CHECK(false, "'", path, "' does not take a ", test.inputs.size(1),
                  "-pixel image: ", error.what_without_backtrace());
    }
    TORCH_CHECK(scores.dim() == 2 && scores.size(1) == 10, "'", path, "' maps an image to ", scores.sizes(),
                " scores; an MNIST model gives one per class, 10");
    const auto result = evaluate(model, test);
    const int64_t file_bytes = bittorch::io::regular_file_size(path);
    std::cout << fmt::format("model            {} ({} packed layers)\n", path, layers)
              << fmt::format("test accuracy    {:.2f}% on {} {} test images ({})\n", result.accuracy, test.size(),
                             dataset, device.str())
              << fmt::format(
                     "file size        {} bytes, of which {} are weights (codes and scales): {:.2f}x smaller "
                     "than the FP32 weights\n",
                     file_bytes, file_weight_bytes, static_cast<double>(fp32_bytes) / file_weight_bytes)
              << fmt::format("weight memory    {} bytes packed against {} in FP32 ({:.2f}x smaller)\n", packed_bytes,
                             fp32_bytes, static_cast<double>(fp32_bytes) / packed_bytes);
    return 0;
  });
}
