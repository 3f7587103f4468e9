#pragma once

// What byte-level BPE vocabularies (GPT-2's, Llama 3's) share: the characters they spell
// bytes with and the split patterns their pre-tokenizers apply.

#include <array>
#include <string>

namespace bittorch::io::detail {

/// GPT-2's split pattern, which a ByteLevel pre-tokenizer with use_regex applies.
constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
/// Llama 3's, as its tokenizer.json (and BitNet b1.58 2B4T's) spells it.
constexpr const char* kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// GPT-2's map of bytes to printable characters, UTF-8: the printable Latin-1 bytes stand for
/// themselves, the others for U+0100, U+0101, ... in byte order.
inline std::array<std::string, 256> byte_characters() {
  std::array<std::string, 256> characters;
  unsigned next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const unsigned c = printable ? b : next++;  // below U+0800: one or two UTF-8 bytes
    characters[b] = c < 0x80 ? std::string(1, static_cast<char>(c))
                             : std::string{static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
  }
  return characters;
}

}  // namespace bittorch::io::detail
