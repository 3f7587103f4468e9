#pragma once

// Options of the decoder-only transformer (BitNet b1.58 style: RMSNorm, rotary attention,
// a squared-ReLU, gated squared-ReLU or SwiGLU MLP, no biases) and its parts. The published
// BitNet b1.58 2B4T (Hugging Face model type "bitnet") is one TransformerOptions: grouped-query
// attention (kv_heads), sub_norms, MlpKind::GatedSquaredReLU with mlp_hidden, rope_base 500000.

#include <bittorch/export.h>
#include <bittorch/quant/config.h>

#include <torch/arg.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::nn {

struct BITTORCH_API RMSNormOptions {
  /* implicit */ RMSNormOptions(int64_t features);
  TORCH_ARG(int64_t, features);
  TORCH_ARG(double, eps) = 1e-6;
};

enum class MlpKind {
  SquaredReLU,       ///< down(relu(up(x))^2), hidden = mlp_ratio * width
  SwiGLU,            ///< down(silu(gate(x)) * up(x)), hidden = 2/3 of mlp_ratio * width, a multiple of 8
  GatedSquaredReLU,  ///< down(relu(gate(x))^2 * up(x)) (BitNet b1.58 2B4T), hidden = mlp_ratio * width
};

/// "squared_relu", "swiglu", "gated_squared_relu"; and back (a c10::Error lists the names for
/// another).
BITTORCH_API std::string to_string(MlpKind kind);
BITTORCH_API MlpKind mlp_kind_from_string(std::string_view name);

struct BITTORCH_API TransformerOptions {
  TORCH_ARG(int64_t, vocab_size) = 256;
  TORCH_ARG(int64_t, layers) = 2;
  TORCH_ARG(int64_t, width) = 64;
  TORCH_ARG(int64_t, heads) = 2;
  /// The longest sequence (positions of the rotary tables and the KV cache).
  TORCH_ARG(int64_t, context) = 64;
  TORCH_ARG(int64_t, mlp_ratio) = 4;
  TORCH_ARG(MlpKind, mlp) = MlpKind::SquaredReLU;
  TORCH_ARG(double, rope_base) = 10000.0;
  TORCH_ARG(double, norm_eps) = 1e-6;
  /// Heads of the keys and values (grouped-query attention: each serves heads / kv_heads query
  /// heads); 0: as many as `heads`.
  TORCH_ARG(int64_t, kv_heads) = 0;
  /// The MLP's hidden size; 0: from mlp_ratio and the MLP kind (mlp_hidden_size).
  TORCH_ARG(int64_t, mlp_hidden) = 0;
  /// An RMSNorm before the attention's output projection and one before the MLP's down
  /// projection (BitNet's "subln").
  TORCH_ARG(bool, sub_norms) = false;
  /// The head's weight is the embedding's (one parameter).
  TORCH_ARG(bool, tied_embeddings) = false;
};

/// "tiny" (2 layers, width 64, 2 heads, context 64), "small" (6, 384, 6, 256: about 10.7M
/// parameters, nanoGPT's character model), "medium" (12, 768, 12, 512), "large" (24, 1536, 12,
/// 1024), "bitnet-2b4t" (BitNet b1.58 2B4T's shape: 30 layers, width 2560, 20 heads with 5 for
/// keys and values, the gated squared-ReLU MLP of 6912, sub-norms, tied embeddings, a
/// vocabulary of 128256, context 4096: 2.41B parameters); a c10::Error lists them for another
/// name.
BITTORCH_API TransformerOptions transformer_preset(std::string_view name);

/// The longest context a TransformerOptions may have (2^20 positions): its rotary tables and
/// KV caches grow with it, and no array of a packed file bounds it.
constexpr int64_t kMaxContext = int64_t{1} << 20;

/// A c10::Error naming the field when `options` describe no model (width not a multiple of
/// heads, an odd head size for rotary embeddings, sizes below 1, a context beyond kMaxContext,
/// a rotary base or norm eps that is not finite...).
BITTORCH_API void check_transformer_options(const TransformerOptions& options);

/// The MLP's hidden size for `options`.
BITTORCH_API int64_t mlp_hidden_size(const TransformerOptions& options);

/// The heads of the keys and values: kv_heads, or heads when it is 0.
BITTORCH_API int64_t key_value_heads(const TransformerOptions& options);

/// `options` as a JSON object ({"vocab_size": 256, "layers": 2, ..., "mlp": "squared_relu",
/// "rope_base": 10000.0, "norm_eps": 1e-06, "kv_heads": 0, "mlp_hidden": 0, "sub_norms": false,
/// "tied_embeddings": false}): what checkpoints record.
BITTORCH_API std::string to_json(const TransformerOptions& options);
/// And back; a missing or mistyped field is a c10::Error naming it, except the last four, which
/// records written before they existed lack (their defaults). The options are not checked
/// (check_transformer_options).
BITTORCH_API TransformerOptions transformer_options_from_json(std::string_view json);

/// A TransformerLM as packed model files record it (docs/packed-format.md): its options and
/// the quantization of its projections (nullopt: full precision).
struct TransformerDescription {
  TransformerOptions options;
  std::optional<quant::QuantConfig> projections;
};
/// The record's integers (vocab_size, layers, width, heads, context, mlp_ratio, mlp; 1 if the
/// projections are ternary, else 0; the quantization's quant::append_numbers, the default
/// QuantConfig's when full precision; then kv_heads, mlp_hidden, sub_norms, tied_embeddings)
/// and reals (rope_base, norm_eps; the quantization's). Records without the last four integers
/// (files written before they existed) read as their defaults.
BITTORCH_API void append_numbers(const TransformerDescription& description, std::vector<int64_t>& ints,
                                 std::vector<double>& reals);
/// And back; numbers that describe no model are a c10::Error naming the field
/// (check_transformer_options included).
BITTORCH_API TransformerDescription transformer_from_numbers(const std::vector<int64_t>& ints,
                                                             const std::vector<double>& reals);

}  // namespace bittorch::nn
