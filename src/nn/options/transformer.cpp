#include <bittorch/nn/options/transformer.h>

#include "common/json_field.h"

#include <c10/util/Exception.h>

#include <cmath>

namespace bittorch::nn {

RMSNormOptions::RMSNormOptions(int64_t features) : features_(features) {}

std::string to_string(MlpKind kind) {
  switch (kind) {
    case MlpKind::SquaredReLU:
      return "squared_relu";
    case MlpKind::SwiGLU:
      return "swiglu";
    case MlpKind::GatedSquaredReLU:
      return "gated_squared_relu";
  }
  TORCH_CHECK(false, "invalid MlpKind ", static_cast<int>(kind));
}

MlpKind mlp_kind_from_string(std::string_view name) {
  for (const auto kind : {MlpKind::SquaredReLU, MlpKind::SwiGLU, MlpKind::GatedSquaredReLU}) {
    if (name == to_string(kind)) return kind;
  }
  TORCH_CHECK(false, "unknown MLP kind '", name, "' (squared_relu, swiglu or gated_squared_relu)");
}

TransformerOptions transformer_preset(std::string_view name) {
  const auto preset = [](int64_t layers, int64_t width, int64_t heads, int64_t context) {
    return TransformerOptions().layers(layers).width(width).heads(heads).context(context);
  };
  if (name == "tiny") return preset(2, 64, 2, 64);
  if (name == "small") return preset(6, 384, 6, 256);
  if (name == "medium") return preset(12, 768, 12, 512);
  if (name == "large") return preset(24, 1536, 12, 1024);
  if (name == "bitnet-2b4t") {  // Microsoft's BitNet b1.58 2B4T (its config.json), 2.41B parameters
    return preset(30, 2560, 20, 4096)
        .vocab_size(128256)
        .kv_heads(5)
        .mlp(MlpKind::GatedSquaredReLU)
        .mlp_hidden(6912)
        .sub_norms(true)
        .tied_embeddings(true)
        .rope_base(500000.0)
        .norm_eps(1e-5);
  }
  TORCH_CHECK(false, "unknown model preset '", name, "' (tiny, small, medium, large or bitnet-2b4t)");
}

void check_transformer_options(const TransformerOptions& o) {
  const auto positive = [](int64_t value, const char* field) {
    TORCH_CHECK(value >= 1, "TransformerOptions: ", field, " must be >= 1, not ", value);
  };
  positive(o.vocab_size(), "vocab_size");
  positive(o.layers(), "layers");
  positive(o.width(), "width");
  positive(o.heads(), "heads");
  positive(o.context(), "context");
  TORCH_CHECK(o.context() <= kMaxContext, "TransformerOptions: context must be at most ", kMaxContext, ", not ",
              o.context());
  positive(o.mlp_ratio(), "mlp_ratio");
  TORCH_CHECK(o.width() % o.heads() == 0, "TransformerOptions: width (", o.width(), ") must be a multiple of heads (",
              o.heads(), ")");
  TORCH_CHECK((o.width() / o.heads()) % 2 == 0, "TransformerOptions: the head size width / heads (",
              o.width() / o.heads(), ") must be even for rotary embeddings");
  TORCH_CHECK(std::isfinite(o.rope_base()) && o.rope_base() > 1,
              "TransformerOptions: rope_base must be finite and > 1, not ", o.rope_base());
  TORCH_CHECK(std::isfinite(o.norm_eps()) && o.norm_eps() > 0,
              "TransformerOptions: norm_eps must be finite and > 0, not ", o.norm_eps());
  TORCH_CHECK(o.kv_heads() >= 0 && o.kv_heads() <= o.heads() && o.heads() % key_value_heads(o) == 0,
              "TransformerOptions: kv_heads (", o.kv_heads(), ") must divide heads (", o.heads(),
              "), or be 0 for as many");
  TORCH_CHECK(o.mlp_hidden() >= 0, "TransformerOptions: mlp_hidden must be >= 0 (0: from mlp_ratio), not ",
              o.mlp_hidden());
}

int64_t mlp_hidden_size(const TransformerOptions& o) {
  if (o.mlp_hidden() > 0) return o.mlp_hidden();
  const int64_t hidden = o.mlp_ratio() * o.width();
  if (o.mlp() != MlpKind::SwiGLU) return hidden;
  return ((2 * hidden / 3) + 7) / 8 * 8;
}

int64_t key_value_heads(const TransformerOptions& o) {
  return o.kv_heads() > 0 ? o.kv_heads() : o.heads();
}

std::string to_json(const TransformerOptions& o) {
  return nlohmann::json{{"vocab_size", o.vocab_size()},
                        {"layers", o.layers()},
                        {"width", o.width()},
                        {"heads", o.heads()},
                        {"context", o.context()},
                        {"mlp_ratio", o.mlp_ratio()},
                        {"mlp", to_string(o.mlp())},
                        {"rope_base", o.rope_base()},
                        {"norm_eps", o.norm_eps()},
                        {"kv_heads", o.kv_heads()},
                        {"mlp_hidden", o.mlp_hidden()},
                        {"sub_norms", o.sub_norms()},
                        {"tied_embeddings", o.tied_embeddings()}}
      .dump();
}

TransformerOptions transformer_options_from_json(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(json.is_object(), "TransformerOptions: expected a JSON object, not '", text, "'");
  // Fields added later: absent from older checkpoints, where they had their defaults.
  const auto later_field = [&](const char* name, auto default_value) {
    return json.contains(name) ? json_field<decltype(default_value)>(json, name, "TransformerOptions") : default_value;
  };
  return TransformerOptions()
      .vocab_size(json_field<int64_t>(json, "vocab_size", "TransformerOptions"))
      .layers(json_field<int64_t>(json, "layers", "TransformerOptions"))
      .width(json_field<int64_t>(json, "width", "TransformerOptions"))
      .heads(json_field<int64_t>(json, "heads", "TransformerOptions"))
      .context(json_field<int64_t>(json, "context", "TransformerOptions"))
      .mlp_ratio(json_field<int64_t>(json, "mlp_ratio", "TransformerOptions"))
      .mlp(mlp_kind_from_string(json_field<std::string>(json, "mlp", "TransformerOptions")))
      .rope_base(json_field<double>(json, "rope_base", "TransformerOptions"))
      .norm_eps(json_field<double>(json, "norm_eps", "TransformerOptions"))
      .kv_heads(later_field("kv_heads", int64_t{0}))
      .mlp_hidden(later_field("mlp_hidden", int64_t{0}))
      .sub_norms(later_field("sub_norms", false))
      .tied_embeddings(later_field("tied_embeddings", false));
}

namespace {

constexpr size_t kOptionInts = 7, kOptionReals = 2;
// kv_heads, mlp_hidden, sub_norms, tied_embeddings: after the quantization's numbers, absent
// from files written before they existed.
constexpr size_t kLaterOptionInts = 4;

}  // namespace

void append_numbers(const TransformerDescription& d, std::vector<int64_t>& ints, std::vector<double>& reals) {
  const auto& o = d.options;
  ints.insert(ints.end(), {o.vocab_size(), o.layers(), o.width(), o.heads(), o.context(), o.mlp_ratio(),
                           static_cast<int64_t>(o.mlp()), d.projections.has_value() ? 1 : 0});
  reals.insert(reals.end(), {o.rope_base(), o.norm_eps()});
  quant::append_numbers(d.projections.value_or(quant::QuantConfig()), ints, reals);
  ints.insert(ints.end(), {o.kv_heads(), o.mlp_hidden(), o.sub_norms() ? 1 : 0, o.tied_embeddings() ? 1 : 0});
}

TransformerDescription transformer_from_numbers(const std::vector<int64_t>& ints, const std::vector<double>& reals) {
  constexpr size_t expected_ints = kOptionInts + 1 + quant::kQuantConfigInts,
                   expected_reals = kOptionReals + quant::kQuantConfigReals;
  const bool later = ints.size() == expected_ints + kLaterOptionInts;
  TORCH_CHECK((ints.size() == expected_ints || later) && reals.size() == expected_reals,
              "a TransformerLM is described by ", expected_ints + kLaterOptionInts,
              " (or, in files written before kv_heads and the options after it, ", expected_ints, ") integers and ",
              expected_reals, " reals, not ", ints.size(), " and ", reals.size());
  TORCH_CHECK(ints[6] >= 0 && ints[6] <= 2, "invalid MLP kind ", ints[6]);
  TORCH_CHECK(ints[7] == 0 || ints[7] == 1, "invalid ternary flag ", ints[7]);
  const auto flag = [&](size_t index, const char* what) {
    TORCH_CHECK(ints[index] == 0 || ints[index] == 1, "invalid ", what, " flag ", ints[index]);
    return ints[index] == 1;
  };
  TransformerDescription d;
  d.options = TransformerOptions()
                  .vocab_size(ints[0])
                  .layers(ints[1])
                  .width(ints[2])
                  .heads(ints[3])
                  .context(ints[4])
                  .mlp_ratio(ints[5])
                  .mlp(static_cast<MlpKind>(ints[6]))
                  .rope_base(reals[0])
                  .norm_eps(reals[1]);
  if (later) {
    d.options.kv_heads(ints[expected_ints])
        .mlp_hidden(ints[expected_ints + 1])
        .sub_norms(flag(expected_ints + 2, "sub_norms"))
        .tied_embeddings(flag(expected_ints + 3, "tied_embeddings"));
  }
  check_transformer_options(d.options);
  if (ints[7] == 1) d.projections = quant::quant_config_from_numbers(ints, kOptionInts + 1, reals, kOptionReals);
  return d;
}

}  // namespace bittorch::nn
