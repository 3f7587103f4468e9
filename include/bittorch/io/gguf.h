#pragma once

// GGUF files for llama.cpp (and bitnet.cpp, its fork): a ternary TransformerLM of BitNet's
// shape written as llama.cpp's "bitnet" architecture, the projections in ggml's TQ2_0 type.

#include <bittorch/export.h>
#include <bittorch/io/tokenizer.h>
#include <bittorch/nn/modules/transformer.h>

#include <c10/core/ScalarType.h>

#include <string>

namespace bittorch::io {

/// Writes `model` to `path` (atomically) as GGUF version 3 for llama.cpp's "bitnet"
/// architecture (src/models/bitnet.cpp there: the tensor names and shapes it loads, NeoX-style
/// rotary embeddings as ours, the head tied to the embedding, "bitnet.hidden_activation" relu2
/// or silu). Each projection is TQ2_0 (ggml's ternary type: 2 bits per weight in blocks of 256
/// with a float16 multiplier, here 1) and its scale a float32 "<name>.scale" tensor, so that
/// the weights are stored exactly; the norms are float32 and the embedding `dtype` (float32,
/// float16 or bfloat16). llama.cpp quantizes activations to 8 bits per block of 256 values for
/// TQ2_0 products, not per token as BitTorch does: logits differ slightly.
///
/// The model must have llama.cpp's BitNet shape (sub_norms, a gated MLP, tied embeddings),
/// ternary projections (TernaryLinear or PackedTernaryLinear) with one scale per layer, and a
/// width and MLP hidden size that are multiples of 256 (TQ2_0's block). The vocabulary is
/// `tokenizer`'s (model "gpt2": byte-level BPE, its tokens, merges and added tokens as control
/// tokens, the pre-tokenizer named by its split pattern: "llama-bpe" for Llama 3's, "gpt-2" for
/// GPT-2's), or without one the 256 bytes (a byte-level model). Anything else is a c10::Error
/// saying what is missing.
BITTORCH_API void export_gguf_bitnet(nn::TransformerLMImpl& model, const std::string& path,
                                     const Tokenizer* tokenizer = nullptr, at::ScalarType dtype = at::kHalf);

}  // namespace bittorch::io
