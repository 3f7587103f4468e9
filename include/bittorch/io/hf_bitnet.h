#pragma once

// Hugging Face BitNet checkpoints (transformers' model type "bitnet", as Microsoft's BitNet
// b1.58 2B4T is published): a folder of config.json and model.safetensors (or shards listed by
// model.safetensors.index.json), into a TransformerLM.

#include <bittorch/export.h>
#include <bittorch/nn/modules/transformer.h>
#include <bittorch/nn/options/transformer.h>
#include <bittorch/quant/config.h>

#include <optional>
#include <string>

namespace bittorch::io {

/// What a Hugging Face BitNet config.json describes.
struct HfBitNetConfig {
  nn::TransformerOptions options;
  /// How its projections' weights are stored and used (quantization_config):
  enum class Weights {
    FullPrecision,  ///< no quantization_config: plain linear layers (a bf16 or float32 model)
    Packed,         ///< "offline": 2-bit codes (uint8, four rows per byte) and a weight_scale each
    Online,         ///< "online" (autobitlinear): master weights ternarized in every forward
  } weights = Weights::FullPrecision;
  /// With Packed: whether the stored weight_scale divides the product ("bitlinear", the default)
  /// or multiplies it ("autobitlinear").
  bool scale_divides = true;
  /// The quantization of the projections (absmean per tensor, int8 activations per token), for
  /// Packed and Online.
  std::optional<quant::QuantConfig> projections;
};

/// Parses a config.json's text; `where` (its path) names it in errors. Fields the model
/// cannot follow (another model type, biases, a rope type other than default, a head size
/// other than hidden_size / num_attention_heads, RMSNorm inside the BitLinear layers) are a
/// c10::Error naming the field.
BITTORCH_API HfBitNetConfig parse_hf_bitnet_config(const std::string& text, const std::string& where);

/// The model in the folder `dir`, on the CPU in float32 and eval mode: with Packed weights the
/// projections are PackedTernaryLinear (the codes as stored, the scale per tensor spread over
/// the rows, 8-bit activations); with Online weights TernaryLinear over the master weights
/// (absmean per tensor, 8-bit activations), trainable; full precision, plain Linear layers.
/// Missing, extra or misshapen tensors are a c10::Error naming the file and the tensor.
BITTORCH_API nn::TransformerLM import_hf_bitnet(const std::string& dir);

/// Writes `model` as a Hugging Face BitNet checkpoint into the folder `dir` (made if missing;
/// its config.json and model.safetensors replaced), which transformers'
/// AutoModelForCausalLM.from_pretrained loads. The embedding, norms and head are stored in
/// `dtype`. The model must have BitNet's shape (sub_norms, and a gated MLP:
/// GatedSquaredReLU or SwiGLU) and projections transformers' BitNet layers compute alike:
/// full-precision Linear layers (written as such), or ternary ones (TernaryLinear or
/// PackedTernaryLinear) with one absmean scale per layer and 8-bit activations, written as
/// packed 2-bit codes with their weight_scale ("bitlinear", offline; transformers quantizes
/// activations to int8 per token, as BitTorch does on the CPU). Anything else is a c10::Error
/// saying what the model lacks.
BITTORCH_API void export_hf_bitnet(nn::TransformerLMImpl& model, const std::string& dir,
                                   at::ScalarType dtype = at::kBFloat16);

}  // namespace bittorch::io
