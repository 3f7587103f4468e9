// io::Tokenizer: byte-level BPE as the tokenizers package computes it, from the tokenizer.json
// fields (model, pre_tokenizer, decoder, added_tokens): added tokens split off first, then the
// split patterns (PCRE2, Unicode properties on), then each piece's bytes as GPT-2's characters
// merged pair by pair, the lowest merge rank first.

#include <bittorch/io/files.h>
#include <bittorch/io/tokenizer.h>

#include "common/json_field.h"
#include "io/byte_level.h"

#include <c10/util/Exception.h>

#ifdef BITTORCH_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_map>

namespace bittorch::io {
namespace {

// The length of the valid UTF-8 sequence at text[i], or 0 if it is not one.
size_t utf8_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  uint32_t code_point = length == 1 ? lead : lead & (0x7F >> length);
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i + k) & 0x3F);
  }
  const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < smallest[length] || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

#ifdef BITTORCH_HAVE_PCRE2
// A compiled pattern; split() returns the pieces of a text: every match and every stretch
// between matches (the tokenizers package's "Isolated" behaviour).
class Pattern {
 public:
  Pattern(const std::string& pattern, bool literal, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &error, &offset, nullptr);
    if (code_ == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error, message.data(), message.size());
      TORCH_CHECK(false, where, ": the split pattern '", pattern, "' does not compile at ", offset, ": ",
                  reinterpret_cast<const char*>(message.data()));
    }
  }
  ~Pattern() { pcre2_code_free(code_); }
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  std::vector<std::string_view> split(std::string_view text) const {
    std::vector<std::string_view> pieces;
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t start = 0, search = 0;
    while (search < text.size()) {
      const int found = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search,
                                    PCRE2_NO_UTF_CHECK, match, nullptr);
      if (found < 0) break;
      const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match);
      if (range[1] == range[0]) {  // an empty match splits nothing: look one character further
        search = range[0] + std::max<size_t>(1, utf8_length(text, range[0]));
        continue;
      }
      if (range[0] > start) pieces.push_back(text.substr(start, range[0] - start));
      pieces.push_back(text.substr(range[0], range[1] - range[0]));
      start = search = range[1];
    }
    pcre2_match_data_free(match);
    if (start < text.size()) pieces.push_back(text.substr(start));
    return pieces;
  }

 private:
  pcre2_code* code_ = nullptr;
};
#else
class Pattern {
 public:
  Pattern(const std::string&, bool, const std::string& where) {
    TORCH_CHECK(false, where,
                ": this BitTorch was built without PCRE2 (Debian's libpcre2-dev), which split patterns "
                "need; install it and rebuild");
  }
  std::vector<std::string_view> split(std::string_view text) const { return {text}; }
};
#endif

}  // namespace

struct Tokenizer::Impl {
  std::unordered_map<std::string, int64_t> vocab;             // token (GPT-2 characters) -> id
  std::vector<std::string> tokens;                            // id -> token, "" where no id
  std::vector<bool> added;                                    // id -> whether an added token (text as written)
  std::unordered_map<std::string, int64_t> merge_rank;        // a + '\xff' + b -> rank
  std::vector<std::string> merges;                            // "a b", in rank order
  std::vector<std::string> split_patterns;                    // the patterns' sources
  std::vector<std::pair<std::string, int64_t>> added_tokens;  // longest first
  std::array<bool, 256> starts_added_token{};                 // by first byte: where to look for one
  std::vector<std::unique_ptr<Pattern>> patterns;             // applied in turn to every piece
  bool ignore_merges = false;
  std::array<std::string, 256> byte_chars;  // byte -> its character, UTF-8
  std::unordered_map<std::string, unsigned char> char_bytes;

  void add_token(const std::string& token, int64_t id, bool is_added, const std::string& where) {
    TORCH_CHECK(id >= 0 && id < (int64_t{1} << 31), where, ": token id ", id, " is out of range");
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      added.resize(id + 1);
    }
    tokens[id] = token;
    added[id] = is_added;
    if (!is_added) vocab[token] = id;
  }

  // The ids of one piece of text (no added token in it).
  void encode_piece(std::string_view piece, std::vector<int64_t>& ids) const {
    std::string word;
    std::vector<std::string> symbols;
    for (const char c : piece) {
      symbols.push_back(byte_chars[static_cast<unsigned char>(c)]);
      word += symbols.back();
    }
    if (ignore_merges) {
      if (const auto found = vocab.find(word); found != vocab.end()) {
        ids.push_back(found->second);
        return;
      }
    }
    while (symbols.size() > 1) {
      int64_t best_rank = std::numeric_limits<int64_t>::max();
      size_t best = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto found = merge_rank.find(symbols[i] + '\xff' + symbols[i + 1]);
        if (found != merge_rank.end() && found->second < best_rank) {
          best_rank = found->second;
          best = i;
        }
      }
      if (best_rank == std::numeric_limits<int64_t>::max()) break;
      // Every occurrence of the best pair, left to right.
      const std::string left = symbols[best], right = symbols[best + 1];
      std::vector<std::string> merged;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
          merged.push_back(left + right);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols = std::move(merged);
    }
    for (const auto& symbol : symbols) {
      const auto found = vocab.find(symbol);
      TORCH_CHECK(found != vocab.end(), "bittorch::io::Tokenizer: the vocabulary lacks '", symbol,
                  "', which byte-level BPE needs");
      ids.push_back(found->second);
    }
  }

  void encode_text(std::string_view text, std::vector<int64_t>& ids) const {
    std::vector<std::string_view> pieces = {text};
    for (const auto& pattern : patterns) {
      std::vector<std::string_view> finer;
      for (const auto piece : pieces) {
        const auto split = pattern->split(piece);
        finer.insert(finer.end(), split.begin(), split.end());
      }
      pieces = std::move(finer);
    }
    for (const auto piece : pieces) encode_piece(piece, ids);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  const std::string where = "bittorch::io::Tokenizer: '" + path + "'";
  const auto json = nlohmann::json::parse(read_regular_file(path), nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(json.is_object(), where, ": not a JSON object");
  auto impl = std::make_unique<Impl>();
  const auto null_or_absent = [&](const nlohmann::json& object, const char* field) {
    return !object.contains(field) || object[field].is_null();
  };
  TORCH_CHECK(null_or_absent(json, "normalizer"), where, ": a normalizer is not followed (field 'normalizer')");

  // The model: BPE over byte-level characters.
  TORCH_CHECK(json.contains("model") && json["model"].is_object(), where, ": no 'model' object");
  const auto& model = json["model"];
  const auto type = model.value("type", std::string("BPE"));
  TORCH_CHECK(type == "BPE", where, ": model.type is '", type, "'; only BPE is read");
  for (const char* field : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "unk_token"}) {
    TORCH_CHECK(null_or_absent(model, field), where, ": model.", field, " is set; byte-level BPE without it is read");
  }
  TORCH_CHECK(!model.value("byte_fallback", false), where, ": model.byte_fallback is not followed");
  impl->ignore_merges = model.value("ignore_merges", false);
  TORCH_CHECK(model.contains("vocab") && model["vocab"].is_object(), where, ": model.vocab is not an object");
  for (const auto& [token, id] : model["vocab"].items()) {
    TORCH_CHECK(id.is_number_integer(), where, ": model.vocab['", token, "'] is not an integer");
    impl->add_token(token, id.get<int64_t>(), false, where);
  }
  TORCH_CHECK(model.contains("merges") && model["merges"].is_array(), where, ": model.merges is not an array");
  int64_t rank = 0;
  for (const auto& merge : model["merges"]) {
    std::string left, right;
    if (merge.is_string()) {  // "a b"
      const auto text = merge.get<std::string>();
      const auto space = text.find(' ');
      TORCH_CHECK(space != std::string::npos && text.find(' ', space + 1) == std::string::npos, where, ": merge ", rank,
                  " '", text, "' is not two tokens");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else {
      TORCH_CHECK(merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string(), where,
                  ": merge ", rank, " is neither \"a b\" nor [a, b]");
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    }
    impl->merge_rank.emplace(left + '\xff' + right, rank++);
    impl->merges.push_back(left + ' ' + right);
  }

  impl->byte_chars = detail::byte_characters();
  for (int b = 0; b < 256; ++b) impl->char_bytes[impl->byte_chars[b]] = static_cast<unsigned char>(b);

  // Pre-tokenizers: ByteLevel alone, or a Sequence of Splits and a ByteLevel.
  TORCH_CHECK(json.contains("pre_tokenizer") && json["pre_tokenizer"].is_object(), where,
              ": no 'pre_tokenizer' object (byte-level BPE has a ByteLevel one)");
  const auto& pre = json["pre_tokenizer"];
  std::vector<nlohmann::json> steps;
  if (pre.value("type", std::string()) == "Sequence") {
    for (const auto& step : pre.value("pretokenizers", nlohmann::json::array())) steps.push_back(step);
  } else {
    steps.push_back(pre);
  }
  bool byte_level = false;
  for (const auto& step : steps) {
    const auto step_type = step.value("type", std::string());
    if (step_type == "Split") {
      TORCH_CHECK(step.value("behavior", std::string()) == "Isolated" && !step.value("invert", false), where,
                  ": a Split pre-tokenizer other than behavior Isolated, invert false is not followed");
      const auto& pattern = step.value("pattern", nlohmann::json::object());
      const bool literal = pattern.contains("String");
      TORCH_CHECK(literal || pattern.contains("Regex"), where, ": a Split pattern is neither Regex nor String");
      const auto source = pattern[literal ? "String" : "Regex"].get<std::string>();
      impl->patterns.push_back(std::make_unique<Pattern>(source, literal, where));
      impl->split_patterns.push_back(source);
    } else if (step_type == "ByteLevel") {
      TORCH_CHECK(!step.value("add_prefix_space", false), where,
                  ": pre_tokenizer ByteLevel.add_prefix_space is not followed");
      if (step.value("use_regex", true)) {
        impl->patterns.push_back(std::make_unique<Pattern>(detail::kGpt2SplitPattern, false, where));
        impl->split_patterns.emplace_back(detail::kGpt2SplitPattern);
      }
      byte_level = true;
    } else {
      TORCH_CHECK(false, where, ": pre-tokenizer '", step_type, "' is not followed (ByteLevel, Split)");
    }
  }
  TORCH_CHECK(byte_level, where, ": no ByteLevel pre-tokenizer: only byte-level BPE is read");
  if (json.contains("decoder") && !json["decoder"].is_null()) {
    TORCH_CHECK(json["decoder"].value("type", std::string()) == "ByteLevel", where, ": decoder '",
                json["decoder"].value("type", std::string()), "' is not followed (ByteLevel)");
  }

  // Added tokens: matched as written, before anything else.
  for (const auto& token : json.value("added_tokens", nlohmann::json::array())) {
    const auto content = json_field<std::string>(token, "content", where.c_str());
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
      TORCH_CHECK(!token.value(flag, false), where, ": added token '", content, "' sets ", flag,
                  ", which is not followed");
    }
    TORCH_CHECK(!content.empty(), where, ": an added token is empty");
    const auto id = json_field<int64_t>(token, "id", where.c_str());
    impl->add_token(content, id, true, where);
    impl->added_tokens.emplace_back(content, id);
    impl->starts_added_token[static_cast<unsigned char>(content[0])] = true;
  }
  std::stable_sort(impl->added_tokens.begin(), impl->added_tokens.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  for (size_t i = 0; i < text.size();) {
    const auto length = utf8_length(text, i);
    TORCH_CHECK(length > 0, "bittorch::io::Tokenizer::encode: the text is not valid UTF-8 at byte ", i);
    i += length;
  }
  std::vector<int64_t> ids;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int64_t>* match = nullptr;
    if (impl_->starts_added_token[static_cast<unsigned char>(text[i])]) {
      for (const auto& token : impl_->added_tokens) {  // longest first
        if (text.compare(i, token.first.size(), token.first) == 0) {
          match = &token;
          break;
        }
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > start) impl_->encode_text(text.substr(start, i - start), ids);
    ids.push_back(match->second);
    i += match->first.size();
    start = i;
  }
  if (start < text.size()) impl_->encode_text(text.substr(start), ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  for (const auto id : ids) {
    TORCH_CHECK(id >= 0 && id < vocab_size() && !impl_->tokens[id].empty(), "bittorch::io::Tokenizer::decode: id ", id,
                " names no token (the vocabulary has ", vocab_size(), ")");
    const auto& token = impl_->tokens[id];
    if (impl_->added[id]) {
      text += token;
      continue;
    }
    for (size_t i = 0; i < token.size();) {
      const auto length = std::max<size_t>(1, utf8_length(token, i));
      const auto found = impl_->char_bytes.find(token.substr(i, length));
      TORCH_CHECK(found != impl_->char_bytes.end(), "bittorch::io::Tokenizer::decode: token ", id, " '", token,
                  "' holds a character outside the byte-level alphabet");
      text += static_cast<char>(found->second);
      i += length;
    }
  }
  return text;
}

int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->tokens.size());
}

Tokenizer::Vocabulary Tokenizer::vocabulary() const {
  return {impl_->tokens, impl_->added, impl_->merges, impl_->split_patterns};
}

}  // namespace bittorch::io
