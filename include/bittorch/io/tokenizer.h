#pragma once

// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json (what GPT-2, Llama 3 and
// BitNet b1.58 2B4T ship), giving the ids the `tokenizers` package gives.

#include <bittorch/export.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bittorch::io {

class BITTORCH_API Tokenizer {
 public:
  /// Reads `path`: model type BPE over GPT-2's byte-to-character map (a ByteLevel
  /// pre-tokenizer, alone with its own split pattern or after a Split by a regex, and a
  /// ByteLevel decoder), merges as "a b" strings or pairs, ignore_merges, added tokens (matched
  /// in the text before anything else). Anything else (a normalizer, another model or
  /// pre-tokenizer, added tokens that strip spaces) is a c10::Error naming the file and the
  /// field. Needs a build with PCRE2 (Debian's libpcre2-dev) for the split patterns.
  static Tokenizer from_file(const std::string& path);

  /// The ids of `text` (valid UTF-8; else a c10::Error naming the byte offset), as the
  /// tokenizers package's encode(text, add_special_tokens=False).
  std::vector<int64_t> encode(std::string_view text) const;
  /// The text of `ids` (each below vocab_size(), else a c10::Error): added tokens as written,
  /// the others' bytes. decode(encode(text)) == text.
  std::string decode(const std::vector<int64_t>& ids) const;
  /// One more than the largest id.
  int64_t vocab_size() const;

  /// The vocabulary as tokenizer.json holds it, for writers of other formats (GGUF).
  struct Vocabulary {
    /// Each id's token: byte-level tokens in GPT-2's characters, added tokens as written, ""
    /// for an id without a token.
    std::vector<std::string> tokens;
    std::vector<bool> added;          ///< whether each id is an added token
    std::vector<std::string> merges;  ///< "a b", in rank order
    /// The split patterns' sources in the order applied (GPT-2's for a ByteLevel pre-tokenizer
    /// that splits).
    std::vector<std::string> split_patterns;
  };
  Vocabulary vocabulary() const;

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bittorch::io
