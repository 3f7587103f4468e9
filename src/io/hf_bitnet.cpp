// io::import_hf_bitnet: transformers' BitNet checkpoint layout (modeling_bitnet.py and
// integrations/bitnet.py of transformers, read for the names, the packing and the scales)
// into nn::TransformerLM.

#include <bittorch/io/files.h>
#include <bittorch/io/hf_bitnet.h>
#include <bittorch/io/safetensors.h>
#include <bittorch/nn/module_tree.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/quant/packing.h>

#include "common/json_field.h"
#include "io/projection_weights.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <map>
#include <set>

namespace bittorch::io {
namespace {

constexpr const char* kCaller = "bittorch::io::import_hf_bitnet";

// A config field, or `fallback` where the config leaves it out.
template <typename T>
T field_or(const nlohmann::json& json, const char* name, T fallback, const std::string& where) {
  if (!json.contains(name) || json[name].is_null()) return fallback;
  return json_field<T>(json, name, where.c_str());
}

// A block's parts: transformers' names and ours, after "model.layers.N." and "blocks.N.".
const std::vector<std::pair<std::string, std::string>>& block_parts() {
  static const std::vector<std::pair<std::string, std::string>> kBlockParts = {
      {"input_layernorm.weight", "attention_norm.weight"},
      {"post_attention_layernorm.weight", "mlp_norm.weight"},
      {"self_attn.q_proj.", "attention.q."},
      {"self_attn.k_proj.", "attention.k."},
      {"self_attn.v_proj.", "attention.v."},
      {"self_attn.o_proj.", "attention.o."},
      {"self_attn.attn_sub_norm.weight", "attention.sub_norm.weight"},
      {"mlp.gate_proj.", "mlp.gate."},
      {"mlp.up_proj.", "mlp.up."},
      {"mlp.down_proj.", "mlp.down."},
      {"mlp.ffn_sub_norm.weight", "mlp.sub_norm.weight"},
  };
  return kBlockParts;
}

// `name` in the other project's spelling: from transformers' to ours (to_ours) or back; "" for
// a name of no BitNet model.
std::string renamed(const std::string& name, bool to_ours) {
  static const std::vector<std::pair<std::string, std::string>> kTopLevel = {
      {"model.embed_tokens.weight", "embedding.weight"},
      {"model.norm.weight", "norm.weight"},
      {"lm_head.weight", "head.weight"}};
  for (const auto& [theirs, ours] : kTopLevel) {
    if (name == (to_ours ? theirs : ours)) return to_ours ? ours : theirs;
  }
  const std::string from = to_ours ? "model.layers." : "blocks.", to = to_ours ? "blocks." : "model.layers.";
  if (name.rfind(from, 0) != 0) return "";
  const auto dot = name.find('.', from.size());
  if (dot == std::string::npos) return "";
  const auto index = name.substr(from.size(), dot - from.size()), rest = name.substr(dot + 1);
  for (const auto& [theirs, ours] : block_parts()) {
    const auto& prefix = to_ours ? theirs : ours;
    if (rest.rfind(prefix, 0) == 0) return to + index + "." + (to_ours ? ours : theirs) + rest.substr(prefix.size());
  }
  return "";
}

// The safetensors files of `dir`: model.safetensors, or the shards its index lists.
std::vector<std::string> weight_files(const std::filesystem::path& dir) {
  const auto single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(single)) return {single.string()};
  TORCH_CHECK(std::filesystem::exists(index), kCaller, ": '", dir.string(),
              "' holds neither model.safetensors nor model.safetensors.index.json");
  const auto json = nlohmann::json::parse(read_regular_file(index.string()), nullptr, false);
  TORCH_CHECK(json.is_object() && json.contains("weight_map") && json["weight_map"].is_object(), kCaller, ": '",
              index.string(), "' has no weight_map object");
  std::set<std::string> shards;
  for (const auto& [name, shard] : json["weight_map"].items()) {
    TORCH_CHECK(shard.is_string() && shard.get<std::string>().find('/') == std::string::npos, kCaller, ": '",
                index.string(), "': the shard of '", name, "' is not a file name in the folder");
    shards.insert(shard.get<std::string>());
  }
  std::vector<std::string> files;
  for (const auto& shard : shards) files.push_back((dir / shard).string());
  return files;
}

// The 2-bit rows transformers packs, four rows per byte: byte r of column c holds, in bits
// 2i and 2i + 1, the code + 1 of row i * (rows / 4) + r. Codes int8 [4 * packed rows, in].
at::Tensor unpack_hf_codes(const at::Tensor& packed) {
  const auto bytes = packed.to(at::kByte).to(at::kInt);
  std::vector<at::Tensor> quarters;
  for (int i = 0; i < 4; ++i) quarters.push_back(bytes.bitwise_right_shift(2 * i).bitwise_and(3));
  const auto fields = at::cat(quarters, 0);
  TORCH_CHECK(!fields.eq(3).any().item<bool>(), "a 2-bit field holds 3, which encodes no ternary value");
  return (fields - 1).to(at::kChar);
}

// And back: codes [rows, in] (rows a multiple of 4) as transformers packs them.
at::Tensor pack_hf_codes(const at::Tensor& codes) {
  const int64_t quarter = codes.size(0) / 4;
  auto packed = at::zeros({quarter, codes.size(1)}, at::TensorOptions().dtype(at::kInt));
  const auto fields = (codes.to(at::kInt) + 1).contiguous();
  for (int i = 0; i < 4; ++i) packed.bitwise_or_(fields.narrow(0, i * quarter, quarter).bitwise_left_shift(2 * i));
  return packed.to(at::kByte);
}

// Whether `config` quantizes as transformers' BitNet layers do: one absmean scale per layer,
// 8-bit activations.
bool hf_compatible(const quant::QuantConfig& config) {
  return config.scale_mode() == quant::ScaleMode::AbsMean && !config.per_channel() && config.activation_bits() == 8;
}

const char* hf_dtype_name(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
}

}  // namespace

HfBitNetConfig parse_hf_bitnet_config(const std::string& text, const std::string& where) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  TORCH_CHECK(json.is_object(), where, ": not a JSON object");
  const auto model_type = field_or<std::string>(json, "model_type", "", where);
  TORCH_CHECK(model_type == "bitnet", where, ": model_type is '", model_type,
              "'; this importer reads transformers' \"bitnet\" models");
  const auto width = json_field<int64_t>(json, "hidden_size", where.c_str());
  const auto heads = json_field<int64_t>(json, "num_attention_heads", where.c_str());
  TORCH_CHECK(!field_or<bool>(json, "attention_bias", false, where), where,
              ": attention_bias is true; BitTorch's attention has no biases");
  if (json.contains("head_dim") && !json["head_dim"].is_null()) {
    TORCH_CHECK(heads > 0 && json_field<int64_t>(json, "head_dim", where.c_str()) * heads == width, where,
                ": head_dim must be hidden_size / num_attention_heads");
  }
  // Transformers 5 writes the rotary base inside rope_parameters, older versions as rope_theta.
  double rope_base = 500000.0;
  if (json.contains("rope_parameters") && json["rope_parameters"].is_object()) {
    const auto& rope = json["rope_parameters"];
    const auto type = field_or<std::string>(rope, "rope_type", "default", where);
    TORCH_CHECK(type == "default", where, ": rope_parameters.rope_type is '", type, "'; only default is followed");
    rope_base = field_or<double>(rope, "rope_theta", rope_base, where);
  } else {
    rope_base = field_or<double>(json, "rope_theta", rope_base, where);
  }
  const auto act = field_or<std::string>(json, "hidden_act", "relu2", where);
  TORCH_CHECK(act == "relu2" || act == "silu", where, ": hidden_act is '", act, "' (relu2 or silu are followed)");
  HfBitNetConfig config;
  config.options = nn::TransformerOptions()
                       .vocab_size(json_field<int64_t>(json, "vocab_size", where.c_str()))
                       .layers(json_field<int64_t>(json, "num_hidden_layers", where.c_str()))
                       .width(width)
                       .heads(heads)
                       .kv_heads(field_or<int64_t>(json, "num_key_value_heads", heads, where))
                       .context(field_or<int64_t>(json, "max_position_embeddings", 2048, where))
                       .mlp(act == "relu2" ? nn::MlpKind::GatedSquaredReLU : nn::MlpKind::SwiGLU)
                       .mlp_hidden(json_field<int64_t>(json, "intermediate_size", where.c_str()))
                       .rope_base(rope_base)
                       .norm_eps(field_or<double>(json, "rms_norm_eps", 1e-5, where))
                       .sub_norms(true)
                       .tied_embeddings(field_or<bool>(json, "tie_word_embeddings", false, where));
  try {
    nn::check_transformer_options(config.options);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, where, ": ", error.what_without_backtrace());
  }
  if (json.contains("quantization_config") && !json["quantization_config"].is_null()) {
    const auto& q = json["quantization_config"];
    const auto method = field_or<std::string>(q, "quant_method", "", where);
    TORCH_CHECK(method == "bitnet", where, ": quantization_config.quant_method is '", method, "', not bitnet");
    TORCH_CHECK(!field_or<bool>(q, "use_rms_norm", false, where), where,
                ": quantization_config.use_rms_norm (an RMSNorm inside each BitLinear) is not followed");
    const auto linear_class = field_or<std::string>(q, "linear_class", "bitlinear", where);
    const auto mode = field_or<std::string>(q, "quantization_mode", "offline", where);
    TORCH_CHECK(linear_class == "bitlinear" || linear_class == "autobitlinear", where,
                ": quantization_config.linear_class is '", linear_class, "' (bitlinear or autobitlinear)");
    TORCH_CHECK(mode == "offline" || mode == "online", where, ": quantization_config.quantization_mode is '", mode,
                "' (offline or online)");
    TORCH_CHECK(linear_class == "autobitlinear" || mode == "offline", where, ": bitlinear layers are offline only");
    config.weights = mode == "online" ? HfBitNetConfig::Weights::Online : HfBitNetConfig::Weights::Packed;
    config.scale_divides = linear_class == "bitlinear";
    config.projections =
        quant::QuantConfig().scale_mode(quant::ScaleMode::AbsMean).per_channel(false).activation_bits(8);
  }
  return config;
}

nn::TransformerLM import_hf_bitnet(const std::string& dir_name) {
  const std::filesystem::path dir(dir_name);
  TORCH_CHECK(std::filesystem::is_directory(dir), kCaller, ": '", dir_name, "' is not a folder");
  const auto config_path = (dir / "config.json").string();
  const auto config = parse_hf_bitnet_config(read_regular_file(config_path), config_path);
  const bool packed = config.weights == HfBitNetConfig::Weights::Packed;

  // Every tensor of the checkpoint by our name (a file's tensors share its bytes).
  std::map<std::string, std::pair<at::Tensor, std::string>> tensors;  // ours -> (tensor, file)
  for (const auto& file_name : weight_files(dir)) {
    const auto file = read_safetensors(file_name);
    for (const auto& [name, tensor] : file.tensors) {
      const auto ours = renamed(name, /*to_ours=*/true);
      TORCH_CHECK(!ours.empty(), kCaller, ": '", file_name, "': tensor '", name,
                  "' is no part of a BitNet model this importer knows");
      TORCH_CHECK(tensors.emplace(ours, std::pair{tensor, file_name}).second, kCaller, ": '", file_name, "': tensor '",
                  name, "' appears twice in the checkpoint");
    }
  }
  const auto take = [&](const std::string& name, const std::string& hf_hint) {
    const auto found = tensors.find(name);
    TORCH_CHECK(found != tensors.end(), kCaller, ": '", dir_name, "' lacks the tensor of ", hf_hint, " ('", name,
                "' here)");
    auto result = found->second;
    tensors.erase(found);
    return result;
  };

  const auto make_projection = [&](const std::string& path, int64_t in, int64_t out) -> torch::nn::AnyModule {
    if (!packed) {  // master weights, loaded below as parameters (then ternary if online)
      return torch::nn::AnyModule(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
    }
    const auto [weight, file] = take(path + ".weight", "projection " + path);
    const auto [weight_scale, scale_file] = take(path + ".weight_scale", "projection " + path + "'s weight_scale");
    const auto where = [&] { return std::string(kCaller) + ": '" + file + "': projection " + path; };
    TORCH_CHECK(
        weight.scalar_type() == at::kByte && weight.dim() == 2 && weight.size(0) * 4 == out && weight.size(1) == in,
        where(), ": expected packed uint8 codes [", out / 4, ", ", in, "], got ", weight.scalar_type(), " ",
        weight.sizes());
    TORCH_CHECK(weight_scale.numel() == 1, where(), ": expected one weight_scale, got ", weight_scale.sizes());
    const double stored = weight_scale.to(at::kDouble).item<double>();
    TORCH_CHECK(std::isfinite(stored) && stored > 0, where(), ": weight_scale ", stored, " is not finite and > 0");
    at::Tensor codes;
    try {
      codes = unpack_hf_codes(weight);
    } catch (const c10::Error& error) {
      TORCH_CHECK(false, where(), ": ", error.what_without_backtrace());
    }
    nn::PackedTernaryLinear layer(nn::PackedTernaryLinearOptions(in, out).bias(false).quant(*config.projections));
    layer->packed.copy_(quant::pack_ternary(codes));
    layer->scale.fill_(config.scale_divides ? 1.0 / stored : stored);
    return torch::nn::AnyModule(layer);
  };
  nn::TransformerLM model(config.options, make_projection);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const auto [tensor, file] = take(item.key(), "parameter " + item.key());
      TORCH_CHECK(tensor.sizes() == item.value().sizes(), kCaller, ": '", file, "': ", item.key(), " is ",
                  tensor.sizes(), ", the config implies ", item.value().sizes());
      TORCH_CHECK(at::isFloatingType(tensor.scalar_type()), kCaller, ": '", file, "': ", item.key(), " is ",
                  tensor.scalar_type(), ", not floating point");
      TORCH_CHECK(at::isfinite(tensor).all().item<bool>(), kCaller, ": '", file, "': ", item.key(),
                  " holds NaN or infinite values");
      item.value().copy_(tensor);
    }
  }
  if (!tensors.empty()) {
    const auto& [name, value] = *tensors.begin();
    TORCH_CHECK(false, kCaller, ": '", value.second, "' holds '", name, "', which the config's model has no place for",
                tensors.size() > 1 ? " (and " + std::to_string(tensors.size() - 1) + " more)" : "");
  }
  if (config.weights == HfBitNetConfig::Weights::Online) {
    nn::convert_to_ternary(*model, *config.projections, nn::is_transformer_projection);
  }
  model->eval();
  return model;
}

void export_hf_bitnet(nn::TransformerLMImpl& model, const std::string& dir_name, at::ScalarType dtype) {
  const char* caller = "bittorch::io::export_hf_bitnet";
  const auto& o = model.options;
  TORCH_CHECK(o.sub_norms() && o.mlp() != nn::MlpKind::SquaredReLU, caller,
              ": transformers' BitNet model has sub-norms and a gated MLP; this model has ",
              o.sub_norms() ? "" : "no sub-norms and ", "a ", nn::to_string(o.mlp()),
              " MLP (train it with --mlp gated_squared_relu --sub-norms)");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf, caller,
              ": store float32, bfloat16 or float16, not ", dtype);
  const auto where = [&](const std::string& path) { return std::string(caller) + ": projection " + path; };

  // The projections, as transformers stores them, and which modules they are.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::set<std::string> projections;
  std::optional<bool> ternary;  // the same for every projection
  for (const auto& projection : detail::projection_weights(model)) {
    const auto& path = projection.path;
    TORCH_CHECK(!ternary || *ternary == projection.ternary(), caller,
                ": the model mixes ternary and full-precision projections (at ", path, ")");
    ternary = projection.ternary();
    projections.insert(path);
    const auto name = renamed(path + ".weight", /*to_ours=*/false);
    if (!projection.ternary()) {
      tensors.emplace_back(name, projection.weight.to(at::kCPU, dtype));
      continue;
    }
    TORCH_CHECK(hf_compatible(*projection.quant), where(path),
                " is ternary with other quantization than transformers' BitNet layers (one absmean scale per layer "
                "and 8-bit activations): ",
                quant::to_json(*projection.quant));
    const auto& scale = projection.scale;
    TORCH_CHECK(scale.eq(scale[0]).all().item<bool>(), where(path),
                " has a scale per output row; transformers' BitNet layers have one per layer");
    TORCH_CHECK(projection.weight.size(0) % 4 == 0, where(path), " has ", projection.weight.size(0),
                " outputs; transformers packs four rows per byte and needs a multiple of 4");
    tensors.emplace_back(name, pack_hf_codes(projection.weight));
    // bitlinear divides the product by weight_scale: the reciprocal of our scale.
    tensors.emplace_back(renamed(path + ".weight_scale", false),
                         at::full({1}, 1.0 / scale[0].item<double>()).to(dtype));
  }
  // The embedding, norms and head.
  for (const auto& item : model.named_parameters()) {
    const auto module_path = item.key().substr(0, item.key().rfind('.'));
    if (projections.count(module_path) > 0) continue;
    const auto name = renamed(item.key(), /*to_ours=*/false);
    TORCH_CHECK(!name.empty(), caller, ": parameter '", item.key(), "' has no place in transformers' BitNet model");
    tensors.emplace_back(name, item.value().detach().to(at::kCPU, dtype));
  }

  nlohmann::ordered_json config = {
      {"architectures", {"BitNetForCausalLM"}},
      {"model_type", "bitnet"},
      {"vocab_size", o.vocab_size()},
      {"hidden_size", o.width()},
      {"intermediate_size", nn::mlp_hidden_size(o)},
      {"num_hidden_layers", o.layers()},
      {"num_attention_heads", o.heads()},
      {"num_key_value_heads", nn::key_value_heads(o)},
      {"hidden_act", o.mlp() == nn::MlpKind::SwiGLU ? "silu" : "relu2"},
      {"max_position_embeddings", o.context()},
      {"rms_norm_eps", o.norm_eps()},
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", o.rope_base()}}},
      {"tie_word_embeddings", o.tied_embeddings()},
      {"attention_bias", false},
      {"bos_token_id", nullptr},
      {"eos_token_id", nullptr},
      {"dtype", hf_dtype_name(dtype)},
  };
  if (ternary.value_or(false)) {
    config["quantization_config"] = {
        {"quant_method", "bitnet"}, {"linear_class", "bitlinear"}, {"quantization_mode", "offline"}};
  }
  const std::filesystem::path dir(dir_name);
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  TORCH_CHECK(std::filesystem::is_directory(dir), caller, ": cannot make the folder '", dir_name, "'",
              error ? ": " + error.message() : "");
  write_safetensors((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
  write_file_atomically((dir / "config.json").string(), config.dump(2) + "\n");
}

}  // namespace bittorch::io
