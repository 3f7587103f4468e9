// Hugging Face interoperability, the C++ half: checkpoints and files written by transformers and
// the safetensors package (tests/python/hf_interop.py make) read here, our logits against
// transformers' on the same tokens; and a file written here for the package to read back
// (hf_interop.py check). CTest runs the three in order (fixture hf_interop); run alone, without
// BITTORCH_INTEROP_DIR, these tests skip and say so.

#include <bittorch/bittorch.h>
#include <bittorch/io/gguf.h>
#include <bittorch/io/hf_bitnet.h>
#include <bittorch/io/safetensors.h>
#include <bittorch/io/tokenizer.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace {

std::string interop_dir() {
  const char* dir = std::getenv("BITTORCH_INTEROP_DIR");
  return dir != nullptr ? dir : "";
}

#define SKIP_WITHOUT_FIXTURE()                                                                                   \
  if (interop_dir().empty()) {                                                                                   \
    GTEST_SKIP() << "BITTORCH_INTEROP_DIR is not set: run through CTest (ctest -R interop), which first writes " \
                    "the checkpoints with tests/python/hf_interop.py make";                                      \
  }

// hf_interop.py's dtype_values: (i % 7 - 3) / 2 in the dtype (integers i % 7 - 3, unsigned
// i % 7, bool i odd), [3, 5].
torch::Tensor dtype_values(const std::string& name) {
  const auto i = torch::arange(15, torch::kDouble);
  const std::map<std::string, torch::ScalarType> dtypes = {
      {"F64", torch::kDouble}, {"F32", torch::kFloat}, {"F16", torch::kHalf},  {"BF16", torch::kBFloat16},
      {"I64", torch::kLong},   {"I32", torch::kInt},   {"I16", torch::kShort}, {"I8", torch::kChar},
      {"U8", torch::kByte},    {"BOOL", torch::kBool}};
  const auto dtype = dtypes.at(name);
  torch::Tensor values;
  if (dtype == torch::kBool) {
    values = i.remainder(2).eq(1);
  } else if (dtype == torch::kByte) {
    values = i.remainder(7).to(dtype);
  } else if (torch::isFloatingType(dtype)) {
    values = ((i.remainder(7) - 3) / 2).to(dtype);
  } else {
    values = (i.remainder(7) - 3).to(dtype);
  }
  return values.reshape({3, 5});
}

// `model` with weights drawn larger than the initialisation's, so that every term matters.
bittorch::nn::TransformerLM randomized(bittorch::nn::TransformerLM model, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    p.copy_(p.dim() == 1 ? 1 + 0.2 * torch::randn_like(p) : 0.3 * torch::randn_like(p));
  }
  return model;
}

// A small model of BitNet b1.58 2B4T's shape: grouped-query attention (4 heads, 2 for keys and
// values), sub-norms, the gated squared-ReLU MLP, its rotary base and norm epsilon.
bittorch::nn::TransformerOptions bitnet_options(int64_t vocab, int64_t width, int64_t hidden, int64_t context) {
  return bittorch::nn::TransformerOptions()
      .vocab_size(vocab)
      .layers(2)
      .width(width)
      .heads(4)
      .kv_heads(2)
      .context(context)
      .mlp(bittorch::nn::MlpKind::GatedSquaredReLU)
      .mlp_hidden(hidden)
      .sub_norms(true)
      .rope_base(500000.0)
      .norm_eps(1e-5);
}

// BitNet b1.58's quantization: one absmean scale per layer, 8-bit activations.
bittorch::quant::QuantConfig bitnet_quantization() {
  return bittorch::quant::QuantConfig()
      .scale_mode(bittorch::quant::ScaleMode::AbsMean)
      .per_channel(false)
      .activation_bits(8);
}

const char* kDtypeNames[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"};

TEST(HfInterop, ReadsTheSafetensorsPackagesFile) {
  SKIP_WITHOUT_FIXTURE();
  const auto file = bittorch::io::read_safetensors(interop_dir() + "/dtypes.safetensors");
  EXPECT_EQ(file.metadata.at("written_by"), "safetensors");
  for (const auto* name : kDtypeNames) {
    const auto& got = file.at(name);
    EXPECT_EQ(got.scalar_type(), dtype_values(name).scalar_type()) << name;
    EXPECT_TRUE(torch::equal(got, dtype_values(name))) << name;
  }
  EXPECT_EQ(file.at("empty").sizes(), torch::IntArrayRef({0, 4}));
}

TEST(HfInterop, WritesAFileForTheSafetensorsPackage) {
  SKIP_WITHOUT_FIXTURE();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto* name : kDtypeNames) tensors.emplace_back(name, dtype_values(name));
  tensors.emplace_back("transposed", dtype_values("F32").t());  // written contiguous
  bittorch::io::write_safetensors(interop_dir() + "/from_cpp.safetensors", tensors, {{"written_by", "bittorch"}});
}

// Logits [sequences, positions, vocab] against transformers', within 1e-5 of their scale. With
// 8-bit activations (int8 per token, as transformers quantizes them) a value within rounding
// error of the midpoint between two codes can take the neighbouring code on one side (we divide
// by max / 127, transformers multiplies by 127 / max, and the values before differ in their last
// bits); that sequence's later logits then move by about 2e-3 of the scale. So there, two of
// the eight sequences may differ by up to 2e-2, the others not: a wrong formula moves them all.
// hf_interop.py's check_logits checks the same.
void expect_logits_match(const std::string& name, const torch::Tensor& logits, const torch::Tensor& expected,
                         bool eight_bit) {
  const double scale = expected.abs().max().item<double>();
  const auto errors = (logits - expected).abs().flatten(1).amax(1);
  const int64_t sequences = errors.size(0);
  const int64_t near = (errors <= 1e-5 * scale).sum().item<int64_t>();
  std::cout << name << ": largest difference " << errors.max().item<double>() << " of logits up to " << scale << "; "
            << near << " of " << sequences << " sequences within 1e-5 of it\n";
  if (eight_bit) {
    EXPECT_GE(near, sequences - 2) << name << ": " << errors;
    EXPECT_LE(errors.max().item<double>(), 2e-2 * scale) << name;
  } else {
    EXPECT_EQ(near, sequences) << name << ": " << errors;
  }
}

// Our model of each checkpoint against transformers' logits on the same tokens, in float32.
// Measured: 3e-6, 2e-6 and 2e-6 of logits up to 6.
TEST(HfInterop, ImportedModelsGiveTransformersLogits) {
  SKIP_WITHOUT_FIXTURE();
  const auto references = bittorch::io::read_safetensors(interop_dir() + "/reference_logits.safetensors");
  const auto tokens = references.at("tokens");
  for (const std::string name : {"fp", "online", "packed"}) {
    auto model = bittorch::io::import_hf_bitnet(interop_dir() + "/" + name);
    const auto expected = references.at(name);
    const torch::NoGradGuard no_grad;
    const auto logits = model->forward(tokens);
    expect_logits_match(name, logits, expected, name != "fp");
    EXPECT_EQ(model->options.kv_heads(), 2) << name;
    EXPECT_TRUE(model->options.sub_norms()) << name;
    EXPECT_EQ(model->options.tied_embeddings(), name == "online") << name;
    // Through a packed model file (what bittorch-lm import writes), float32 storage: the same.
    const auto file = interop_dir() + "/" + name + ".btp";
    bittorch::io::save_packed(*model, file, torch::kFloat);
    EXPECT_TRUE(torch::allclose(bittorch::io::load_packed_transformer(file)->forward(tokens), logits, 1e-5, 1e-5))
        << name;
  }
}

// Our models exported for transformers, with our logits for hf_interop.py check to compare
// with transformers' (the same tolerances): full precision; ternary (absmean per layer, 8-bit
// activations) with tied embeddings; the same model packed.
TEST(HfInterop, ExportsModelsForTransformers) {
  SKIP_WITHOUT_FIXTURE();
  namespace bn = bittorch::nn;
  const auto options = bitnet_options(64, 32, 48, 32);
  torch::manual_seed(12);
  const auto tokens = torch::randint(0, 64, {8, 12});
  std::vector<std::pair<std::string, at::Tensor>> logits = {{"tokens", tokens}};
  const auto export_model = [&](bn::TransformerLM& model, const std::string& name) {
    model->eval();
    const torch::NoGradGuard no_grad;
    logits.emplace_back(name, model->forward(tokens));
    bittorch::io::export_hf_bitnet(*model, interop_dir() + "/export_" + name, torch::kFloat);
  };
  auto full = randomized(bn::TransformerLM(options), 5);
  export_model(full, "fp");
  auto ternary = randomized(bn::TransformerLM(bn::TransformerOptions(options).tied_embeddings(true)), 6);
  bn::convert_to_ternary(*ternary, bitnet_quantization(), bn::is_transformer_projection);
  export_model(ternary, "ternary");
  bn::pack(*ternary);
  export_model(ternary, "packed");
  bittorch::io::write_safetensors(interop_dir() + "/export_logits.safetensors", logits);

  // What transformers' layers would not compute alike is refused, saying why.
  auto plain = bn::TransformerLM(bn::TransformerOptions().vocab_size(64));
  EXPECT_THROW(
      {
        try {
          bittorch::io::export_hf_bitnet(*plain, interop_dir() + "/refused");
        } catch (const c10::Error& error) {
          EXPECT_NE(std::string(error.what()).find("--mlp gated_squared_relu --sub-norms"), std::string::npos);
          throw;
        }
      },
      c10::Error);
  auto per_channel = bn::TransformerLM(options);
  bn::convert_to_ternary(*per_channel, bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean),
                         bn::is_transformer_projection);
  EXPECT_THROW(bittorch::io::export_hf_bitnet(*per_channel, interop_dir() + "/refused"), c10::Error);
}

// A ternary model of llama.cpp's BitNet shape (grouped-query attention, width and hidden size
// multiples of TQ2_0's 256-value blocks) written as GGUF with the Llama 3-layout tokenizer,
// and the values every tensor must hold for hf_interop.py check to compare with what the
// gguf package reads back; its packed file (float32 arrays) for bittorch-lm export --gguf.
// What llama.cpp's BitNet model cannot hold is refused, saying why.
TEST(HfInterop, ExportsGgufForLlamaCpp) {
  SKIP_WITHOUT_FIXTURE();
  namespace bn = bittorch::nn;
  const auto options = bitnet_options(1500, 256, 512, 64).tied_embeddings(true);
  auto model = randomized(bn::TransformerLM(options), 8);
  bn::convert_to_ternary(*model, bitnet_quantization(), bn::is_transformer_projection);
  model->eval();
  const auto tokenizer = bittorch::io::Tokenizer::from_file(interop_dir() + "/tokenizer_llama3.json");
  bittorch::io::export_gguf_bitnet(*model, interop_dir() + "/model.gguf", &tokenizer);
  std::vector<std::pair<std::string, at::Tensor>> expected;
  for (const auto& item : model->named_modules("", /*include_self=*/false)) {
    if (const auto* layer = item.value()->as<bn::TernaryLinearImpl>()) {
      const auto quantized = layer->get_quantized_weight();
      expected.emplace_back(item.key() + ".codes", quantized.codes.to(torch::kFloat));
      expected.emplace_back(item.key() + ".scale", quantized.scale.to(torch::kFloat).flatten());
    }
  }
  for (const auto& p : model->named_parameters()) {
    if (p.value().dim() == 1 || p.key() == "embedding.weight") expected.emplace_back(p.key(), p.value().detach());
  }
  bittorch::io::write_safetensors(interop_dir() + "/gguf_expected.safetensors", expected);
  bn::pack(*model);
  bittorch::io::save_packed(*model, interop_dir() + "/gguf_model.btp", torch::kFloat);

  const auto refused = [&](bn::TransformerLMImpl& other, const std::vector<std::string>& needles) {
    try {
      bittorch::io::export_gguf_bitnet(other, interop_dir() + "/refused.gguf", &tokenizer);
    } catch (const c10::Error& error) {
      for (const auto& needle : needles) {
        if (std::string(error.what()).find(needle) == std::string::npos)
          return "no '" + needle + "' in " + error.what();
      }
      return std::string();
    }
    return std::string("not refused");
  };
  auto untied = bn::TransformerLM(bn::TransformerOptions(options).tied_embeddings(false));
  bn::convert_to_ternary(*untied, bitnet_quantization(), bn::is_transformer_projection);
  EXPECT_EQ(refused(*untied, {"untied embeddings", "--tied-embeddings"}), "");
  auto narrow = bn::TransformerLM(bn::TransformerOptions(options).mlp_hidden(320));
  bn::convert_to_ternary(*narrow, bitnet_quantization(), bn::is_transformer_projection);
  EXPECT_EQ(refused(*narrow, {"hidden size 320", "multiples of it"}), "");
  auto full_precision = bn::TransformerLM(options);
  EXPECT_EQ(refused(*full_precision, {"blocks.0.attention.q is full precision"}), "");
  auto per_channel = bn::TransformerLM(options);
  bn::convert_to_ternary(*per_channel, bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean),
                         bn::is_transformer_projection);
  EXPECT_EQ(refused(*per_channel, {"a scale per output row"}), "");
  auto byte_model = bn::TransformerLM(bn::TransformerOptions(options).vocab_size(300));
  bn::convert_to_ternary(*byte_model, bitnet_quantization(), bn::is_transformer_projection);
  try {
    bittorch::io::export_gguf_bitnet(*byte_model, interop_dir() + "/refused.gguf");
    ADD_FAILURE() << "a vocabulary of 300 without a tokenizer was not refused";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find("give its tokenizer"), std::string::npos) << error.what();
  }
}

// Our byte-level BPE against the tokenizers package's ids on 260 KB of varied text (held-out
// Shakespeare, other scripts, emoji, combining marks, whitespace runs, special tokens), for a
// tokenizer in Llama 3's layout and one in GPT-2's: equal ids, and the text back from them.
TEST(HfInterop, TokenizerGivesTheTokenizersPackagesIds) {
  SKIP_WITHOUT_FIXTURE();
  std::ifstream in(interop_dir() + "/tokenizer_text.txt", std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_GT(text.size(), 200000u);
  const auto expected = bittorch::io::read_safetensors(interop_dir() + "/tokenizer_ids.safetensors");
  for (const std::string name : {"llama3", "gpt2"}) {
    const auto tokenizer = bittorch::io::Tokenizer::from_file(interop_dir() + "/tokenizer_" + name + ".json");
    const auto start = std::chrono::steady_clock::now();
    const auto ids = tokenizer.encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << name << ": " << ids.size() << " ids of " << text.size() << " bytes in " << seconds << " s\n";
    const auto want = expected.at(name);
    ASSERT_EQ(static_cast<int64_t>(ids.size()), want.numel()) << name;
    const auto* w = want.data_ptr<int64_t>();
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ(ids[i], w[i]) << name << ": id " << i << " ('" << tokenizer.decode({w[i]}) << "' expected)";
    }
    EXPECT_EQ(tokenizer.decode(ids), text) << name;
    EXPECT_EQ(tokenizer.vocab_size(), 1500) << name;
  }
  const auto tokenizer = bittorch::io::Tokenizer::from_file(interop_dir() + "/tokenizer_llama3.json");
  EXPECT_THROW(tokenizer.encode("bad \xff byte"), c10::Error);
  EXPECT_THROW(tokenizer.decode({1500}), c10::Error);
}

TEST(HfInterop, RefusesWhatItCannotFollow) {
  SKIP_WITHOUT_FIXTURE();
  using bittorch::io::parse_hf_bitnet_config;
  const auto expect_refused = [](const std::string& json, const std::string& needle) {
    try {
      parse_hf_bitnet_config(json, "config.json");
      ADD_FAILURE() << "accepted " << json;
    } catch (const c10::Error& error) {
      const std::string message = error.what_without_backtrace();
      EXPECT_NE(message.find(needle), std::string::npos) << message;
      EXPECT_NE(message.find("config.json"), std::string::npos) << message;
    }
  };
  const std::string base =
      R"({"model_type": "bitnet", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2)";
  EXPECT_EQ(parse_hf_bitnet_config(base + "}", "config.json").options.rope_base(), 500000.0);
  expect_refused(R"({"model_type": "llama"})", "model_type is 'llama'");
  expect_refused(base + R"(, "attention_bias": true})", "attention_bias");
  expect_refused(base + R"(, "rope_parameters": {"rope_type": "yarn"}})", "rope_type is 'yarn'");
  expect_refused(base + R"(, "num_key_value_heads": 3})", "kv_heads (3)");
  expect_refused(base + R"(, "quantization_config": {"quant_method": "bitnet", "use_rms_norm": true}})",
                 "use_rms_norm");
  expect_refused(base + R"(, "hidden_act": "gelu"})", "hidden_act is 'gelu'");

  // A checkpoint with a NaN in a weight is refused, naming the tensor.
  const auto source = interop_dir() + "/fp", nan_dir = interop_dir() + "/with_nan";
  ::mkdir(nan_dir.c_str(), 0755);
  bittorch::io::write_file_atomically(nan_dir + "/config.json",
                                      bittorch::io::read_regular_file(source + "/config.json"));
  auto weights = bittorch::io::read_safetensors(source + "/model.safetensors").tensors;
  for (auto& [name, tensor] : weights) {
    if (name == "model.norm.weight") tensor = tensor.clone().index_put_({1}, NAN);
  }
  bittorch::io::write_safetensors(nan_dir + "/model.safetensors", weights);
  try {
    bittorch::io::import_hf_bitnet(nan_dir);
    ADD_FAILURE() << "a NaN weight was imported";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find("norm.weight holds NaN or infinite values"), std::string::npos)
        << error.what();
  }
}

}  // namespace
