#include <bittorch/nn/options/transformer.h>

#include <c10/util/Exception.h>

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
  positive(o.mlp_ratio(), "mlp_ratio");
  TORCH_CHECK(o.width() % o.heads() == 0, "TransformerOptions: width (", o.width(), ") must be a multiple of heads (",
              o.heads(), ")");
  TORCH_CHECK((o.width() / o.heads()) % 2 == 0, "TransformerOptions: the head size width / heads (",
              o.width() / o.heads(), ") must be even for rotary embeddings");
  TORCH_CHECK(o.rope_base() > 1, "TransformerOptions: rope_base must be > 1, not ", o.rope_base());
  TORCH_CHECK(o.norm_eps() > 0, "TransformerOptions: norm_eps must be > 0, not ", o.norm_eps());
}

int64_t mlp_hidden_size(const TransformerOptions& o) {
  const int64_t hidden = o.mlp_ratio() * o.width();
  if (o.mlp() == MlpKind::SquaredReLU) return hidden;
  return ((2 * hidden / 3) + 7) / 8 * 8;
}

}  // namespace bittorch::nn
