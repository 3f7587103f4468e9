// io::export_gguf_bitnet: a TransformerLM as llama.cpp's "bitnet" architecture (tensor names
// and shapes from llama.cpp's src/models/bitnet.cpp, metadata keys from the gguf package's
// constants; both read, not copied).

#include <bittorch/io/files.h>
#include <bittorch/io/gguf.h>

#include "io/byte_level.h"
#include "io/gguf_writer.h"
#include "io/projection_weights.h"

#include <ATen/ATen.h>

#include <map>
#include <set>

namespace bittorch::io {
namespace {

using detail::GgmlType;

// llama.cpp's token types (llama_token_type).
constexpr int32_t kNormalToken = 1, kControlToken = 3, kUnusedToken = 5;

// Our module names after "blocks.N." and llama.cpp's after "blk.N.".
const std::map<std::string, std::string>& block_tensor_names() {
  static const std::map<std::string, std::string> kNames = {
      {"attention_norm", "attn_norm"}, {"attention.q", "attn_q"},        {"attention.k", "attn_k"},
      {"attention.v", "attn_v"},       {"attention.o", "attn_output"},   {"attention.sub_norm", "attn_sub_norm"},
      {"mlp_norm", "ffn_norm"},        {"mlp.gate", "ffn_gate"},         {"mlp.up", "ffn_up"},
      {"mlp.down", "ffn_down"},        {"mlp.sub_norm", "ffn_sub_norm"},
  };
  return kNames;
}

// llama.cpp's name of our module at `path` ("blocks.3.mlp.up" -> "blk.3.ffn_up").
std::string gguf_name(const std::string& path) {
  if (path == "embedding") return "token_embd";
  if (path == "norm") return "output_norm";
  const std::string prefix = "blocks.";
  const auto dot = path.find('.', prefix.size());
  TORCH_CHECK(path.rfind(prefix, 0) == 0 && dot != std::string::npos, "no GGUF name for '", path, "'");
  const auto found = block_tensor_names().find(path.substr(dot + 1));
  TORCH_CHECK(found != block_tensor_names().end(), "no GGUF name for '", path, "'");
  return "blk." + path.substr(prefix.size(), dot - prefix.size()) + "." + found->second;
}

void add_vocabulary(detail::GgufWriter& file, const Tokenizer* tokenizer, int64_t vocab_size, const char* caller) {
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  std::string pre = "default";
  if (tokenizer == nullptr) {
    TORCH_CHECK(vocab_size == 256, caller, ": the model has a vocabulary of ", vocab_size,
                " tokens, not the 256 bytes of a byte-level model: give its tokenizer");
    const auto characters = detail::byte_characters();
    tokens.assign(characters.begin(), characters.end());
    types.assign(256, kNormalToken);
  } else {
    const auto vocabulary = tokenizer->vocabulary();
    TORCH_CHECK(static_cast<int64_t>(vocabulary.tokens.size()) <= vocab_size, caller, ": the tokenizer has ",
                vocabulary.tokens.size(), " tokens, more than the model's vocabulary of ", vocab_size);
    const auto& patterns = vocabulary.split_patterns;
    if (patterns == std::vector<std::string>{detail::kLlama3SplitPattern}) {
      pre = "llama-bpe";
    } else if (patterns == std::vector<std::string>{detail::kGpt2SplitPattern}) {
      pre = "gpt-2";
    } else {
      TORCH_CHECK(false, caller,
                  ": the tokenizer splits text by patterns llama.cpp has no name for (it knows Llama 3's "
                  "and GPT-2's): ",
                  patterns.empty() ? std::string("none") : patterns.front());
    }
    for (size_t id = 0; id < vocabulary.tokens.size(); ++id) {
      const bool missing = vocabulary.tokens[id].empty();
      tokens.push_back(missing ? "[PAD" + std::to_string(id) + "]" : vocabulary.tokens[id]);
      types.push_back(missing ? kUnusedToken : vocabulary.added[id] ? kControlToken : kNormalToken);
    }
    merges = vocabulary.merges;
  }
  // Rows of the embedding beyond the tokenizer's ids: unused tokens, as llama.cpp's converter pads.
  for (auto id = static_cast<int64_t>(tokens.size()); id < vocab_size; ++id) {
    tokens.push_back("[PAD" + std::to_string(id) + "]");
    types.push_back(kUnusedToken);
  }
  file.add("tokenizer.ggml.model", "gpt2");
  file.add("tokenizer.ggml.pre", pre);
  file.add("tokenizer.ggml.tokens", tokens);
  file.add("tokenizer.ggml.token_type", types);
  file.add("tokenizer.ggml.merges", merges);
  file.add("tokenizer.ggml.add_bos_token", false);
}

}  // namespace

void export_gguf_bitnet(nn::TransformerLMImpl& model, const std::string& path, const Tokenizer* tokenizer,
                        at::ScalarType dtype) {
  const char* caller = "bittorch::io::export_gguf_bitnet";
  const auto& o = model.options;
  TORCH_CHECK(o.sub_norms() && o.mlp() != nn::MlpKind::SquaredReLU && o.tied_embeddings(), caller,
              ": llama.cpp's BitNet model has sub-norms, a gated MLP and the head tied to the embedding; this model "
              "has ",
              o.sub_norms() ? "sub-norms" : "no sub-norms", ", a ", nn::to_string(o.mlp()), " MLP and ",
              o.tied_embeddings() ? "tied" : "untied",
              " embeddings (train it with --mlp gated_squared_relu --sub-norms "
              "--tied-embeddings)");
  const int64_t hidden = nn::mlp_hidden_size(o);
  TORCH_CHECK(o.width() % detail::kTq2BlockValues == 0 && hidden % detail::kTq2BlockValues == 0, caller,
              ": TQ2_0 stores rows in blocks of ", detail::kTq2BlockValues, " weights; the width ", o.width(),
              " and the MLP hidden size ", hidden, " must be multiples of it");
  const auto stored = dtype == at::kFloat ? GgmlType::F32 : dtype == at::kHalf ? GgmlType::F16 : GgmlType::BF16;
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, caller,
              ": store the embedding in float32, float16 or bfloat16, not ", dtype);

  detail::GgufWriter file;
  file.add("general.architecture", "bitnet");
  file.add("general.name", "bittorch-lm");
  file.add("general.file_type", uint32_t{37});  // llama_ftype MOSTLY_TQ2_0
  const auto count = [](int64_t n) { return static_cast<uint32_t>(n); };
  file.add("bitnet.vocab_size", count(o.vocab_size()));
  file.add("bitnet.context_length", count(o.context()));
  file.add("bitnet.embedding_length", count(o.width()));
  file.add("bitnet.block_count", count(o.layers()));
  file.add("bitnet.feed_forward_length", count(hidden));
  file.add("bitnet.attention.head_count", count(o.heads()));
  file.add("bitnet.attention.head_count_kv", count(nn::key_value_heads(o)));
  file.add("bitnet.rope.dimension_count", count(o.width() / o.heads()));
  file.add("bitnet.rope.freq_base", static_cast<float>(o.rope_base()));
  file.add("bitnet.attention.layer_norm_rms_epsilon", static_cast<float>(o.norm_eps()));
  file.add("bitnet.hidden_activation", o.mlp() == nn::MlpKind::SwiGLU ? "silu" : "relu2");
  add_vocabulary(file, tokenizer, o.vocab_size(), caller);

  std::set<std::string> projection_paths;
  for (const auto& projection : detail::projection_weights(model)) {
    const auto name = gguf_name(projection.path);
    TORCH_CHECK(projection.ternary(), caller, ": projection ", projection.path,
                " is full precision; llama.cpp's BitNet model takes ternary ones (convert and train it ternary)");
    const auto& scale = projection.scale;
    TORCH_CHECK(scale.eq(scale[0]).all().item<bool>(), caller, ": projection ", projection.path,
                " has a scale per output row; llama.cpp's BitNet layers have one per layer");
    file.add_tensor(name + ".weight", projection.weight.sizes().vec(), GgmlType::TQ2_0,
                    detail::encode_tq2_0(projection.weight, 1.0F));
    file.add_tensor(name + ".scale", scale.narrow(0, 0, 1), GgmlType::F32);
    projection_paths.insert(projection.path);
  }
  for (const auto& item : model.named_parameters()) {
    const auto module_path = item.key().substr(0, item.key().rfind('.'));
    if (projection_paths.count(module_path) > 0) continue;
    const bool embedding = module_path == "embedding";
    file.add_tensor(gguf_name(module_path) + ".weight", item.value(), embedding ? stored : GgmlType::F32);
  }
  write_file_atomically(path, file.bytes());
}

}  // namespace bittorch::io
