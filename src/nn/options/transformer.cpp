#include <bittorch/nn/options/transformer.h>

#include "common/json_field.h"

#include <c10/util/Exception.h>

#include <cmath>

namespace bittorch::nn {

RMSNormOptions::RMSNormOptions(int64_t features) : features_(features) {}

std::string to_string(MlpKind kind) {
  return kind == MlpKind::SwiGLU ? "swiglu" : "squared_relu";
}

MlpKind mlp_kind_from_string(std::string_view name) {
  for (const auto kind : {MlpKind::SquaredReLU, MlpKind::SwiGLU}) {
    if (name == to_string(kind)) return kind;
  }
  TORCH_CHECK(false, "unknown MLP kind '", name, "' (squared_relu or swiglu)");
}

TransformerOptions transformer_preset(std::string_view name) {
  const auto preset = [](int64_t layers, int64_t width, int64_t heads, int64_t context) {
    return TransformerOptions().layers(layers).width(width).heads(heads).context(context);
  };
  if (name == "tiny") return preset(2, 64, 2, 64);
  if (name == "small") return preset(6, 384, 6, 256);
  if (name == "medium") return preset(12, 768, 12, 512);
  if (name == "large") return preset(24, 1536, 12, 1024);
  TORCH_CHECK(false, "unknown model preset '", name, "' (tiny, small, medium or large)");
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
}

int64_t mlp_hidden_size(const TransformerOptions& o) {
  const int64_t hidden = o.mlp_ratio() * o.width();
  if (o.mlp() == MlpKind::SquaredReLU) return hidden;
  return ((2 * hidden / 3) + 7) / 8 * 8;
}

std::string to_json(const TransformerOptions& o) {
  return nlohmann::json{{"vocab_size", o.vocab_size()}, {"layers", o.layers()},       {"width", o.width()},
                        {"heads", o.heads()},           {"context", o.context()},     {"mlp_ratio", o.mlp_ratio()},
                        {"mlp", to_string(o.mlp())},    {"rope_base", o.rope_base()}, {"norm_eps", o.norm_eps()}}
      .dump();
}

TransformerOptions transformer_options_from_json(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(json.is_object(), "TransformerOptions: expected a JSON object, not '", text, "'");
  return TransformerOptions()
      .vocab_size(json_field<int64_t>(json, "vocab_size", "TransformerOptions"))
      .layers(json_field<int64_t>(json, "layers", "TransformerOptions"))
      .width(json_field<int64_t>(json, "width", "TransformerOptions"))
      .heads(json_field<int64_t>(json, "heads", "TransformerOptions"))
      .context(json_field<int64_t>(json, "context", "TransformerOptions"))
      .mlp_ratio(json_field<int64_t>(json, "mlp_ratio", "TransformerOptions"))
      .mlp(mlp_kind_from_string(json_field<std::string>(json, "mlp", "TransformerOptions")))
      .rope_base(json_field<double>(json, "rope_base", "TransformerOptions"))
      .norm_eps(json_field<double>(json, "norm_eps", "TransformerOptions"));
}

namespace {

constexpr size_t kOptionInts = 7, kOptionReals = 2;

}  // namespace

void append_numbers(const TransformerDescription& d, std::vector<int64_t>& ints, std::vector<double>& reals) {
  const auto& o = d.options;
  ints.insert(ints.end(), {o.vocab_size(), o.layers(), o.width(), o.heads(), o.context(), o.mlp_ratio(),
                           static_cast<int64_t>(o.mlp()), d.projections.has_value() ? 1 : 0});
  reals.insert(reals.end(), {o.rope_base(), o.norm_eps()});
  quant::append_numbers(d.projections.value_or(quant::QuantConfig()), ints, reals);
}

TransformerDescription transformer_from_numbers(const std::vector<int64_t>& ints, const std::vector<double>& reals) {
  constexpr size_t expected_ints = kOptionInts + 1 + quant::kQuantConfigInts,
                   expected_reals = kOptionReals + quant::kQuantConfigReals;
  TORCH_CHECK(ints.size() == expected_ints && reals.size() == expected_reals, "a TransformerLM is described by ",
              expected_ints, " integers and ", expected_reals, " reals, not ", ints.size(), " and ", reals.size());
  TORCH_CHECK(ints[6] == 0 || ints[6] == 1, "invalid MLP kind ", ints[6]);
  TORCH_CHECK(ints[7] == 0 || ints[7] == 1, "invalid ternary flag ", ints[7]);
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
  check_transformer_options(d.options);
  if (ints[7] == 1) d.projections = quant::quant_config_from_numbers(ints, kOptionInts + 1, reals, kOptionReals);
  return d;
}

}  // namespace bittorch::nn
