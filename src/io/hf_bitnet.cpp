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

// Our module path of a transformers parameter name, or "" for one we do not know.
std::string our_name(const std::string& hf) {
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
  if (hf == "model.embed_tokens.weight") return "embedding.weight";
  if (hf == "model.norm.weight") return "norm.weight";
  if (hf == "lm_head.weight") return "head.weight";
  const std::string layers = "model.layers.";
  if (hf.rfind(layers, 0) != 0) return "";
  const auto dot = hf.find('.', layers.size());
  if (dot == std::string::npos) return "";
  const auto index = hf.substr(layers.size(), dot - layers.size()), rest = hf.substr(dot + 1);
  for (const auto& [theirs, ours] : kBlockParts) {
    if (rest.rfind(theirs, 0) == 0) return "blocks." + index + "." + ours + rest.substr(theirs.size());
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
    TORCH_CHECK(linear_class == "autobitlinear" || mode == "offline", where,
                ": bitlinear layers are offline only");
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
      const auto ours = our_name(name);
      TORCH_CHECK(!ours.empty(), kCaller, ": '", file_name, "': tensor '", name,
                  "' is no part of a BitNet model this importer knows");
      TORCH_CHECK(tensors.emplace(ours, std::pair{tensor, file_name}).second, kCaller, ": '", file_name,
                  "': tensor '", name, "' appears twice in the checkpoint");
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
    TORCH_CHECK(weight.scalar_type() == at::kByte && weight.dim() == 2 && weight.size(0) * 4 == out &&
                    weight.size(1) == in,
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
    nn::PackedTernaryLinear layer(
        nn::PackedTernaryLinearOptions(in, out).bias(false).quant(*config.projections));
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

}  // namespace bittorch::io
