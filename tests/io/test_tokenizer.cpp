// io::Tokenizer on hand-made tokenizer.json files: the merge order of byte-level BPE worked by
// hand, added tokens split off first, GPT-2's byte alphabet both ways, and what it refuses.
// Against the tokenizers package on real tokenizers and varied text: tests/interop.

#include "reference.h"
#include "temp_dir.h"

#include <bittorch/io/files.h>
#include <bittorch/io/tokenizer.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace {

using bittorch::io::Tokenizer;
using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;

// GPT-2's character of byte b, written out from its definition.
std::string byte_char(int b) {
  int code_point = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    code_point = 256;
    for (int k = 0; k < b; ++k)
      code_point += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
  }
  std::string out;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return out;
}

// Ids 0-255: the bytes; 256 "ab", 257 "abb", 258 "Ġa" (space a); merges in that order; added
// token 259 "<s>".
nlohmann::json toy_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["ab"] = 256;
  vocab["abb"] = 257;
  vocab[byte_char(' ') + "a"] = 258;
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab b", byte_char(' ') + " a"}}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", {{{"id", 259}, {"content", "<s>"}, {"special", true}}}}};
}

TEST(Tokenizer, MergesByRankAndSplitsAddedTokens) {
  TempDir dir;
  bittorch::io::write_file_atomically(dir.file("t.json"), toy_tokenizer().dump());
  const auto tokenizer = Tokenizer::from_file(dir.file("t.json"));
  EXPECT_EQ(tokenizer.vocab_size(), 260);
  // "abba": a b -> ab (rank 0), then ab b -> abb (rank 1); "a" stays.
  EXPECT_EQ(tokenizer.encode("abba"), (std::vector<int64_t>{257, 'a'}));
  // " ab": the pair (a, b) ranks before (Ġ, a), so the space stays alone.
  EXPECT_EQ(tokenizer.encode(" ab"), (std::vector<int64_t>{' ', 256}));
  EXPECT_EQ(tokenizer.encode(" a<s>ab"), (std::vector<int64_t>{258, 259, 256}));
  // Every byte of non-ASCII text through GPT-2's alphabet and back.
  const std::string text = "\xc3\xa9\n\t\xf0\x9f\x91\x8d <s>x";
  const auto ids = tokenizer.encode(text);
  EXPECT_EQ(ids.front(), 0xc3);
  EXPECT_EQ(tokenizer.decode(ids), text);
  EXPECT_TRUE(throws_error_mentioning([&] { tokenizer.encode("a\xc3("); }, {"not valid UTF-8 at byte 1"}));
  EXPECT_TRUE(throws_error_mentioning([&] { tokenizer.decode({260}); }, {"id 260 names no token"}));
}

TEST(Tokenizer, RefusesWhatItDoesNotFollow) {
  TempDir dir;
  const auto path = dir.file("t.json");
  const auto expect_refused = [&](nlohmann::json json, const std::string& needle) {
    bittorch::io::write_file_atomically(path, json.dump());
    EXPECT_TRUE(throws_error_mentioning([&] { Tokenizer::from_file(path); }, {path, needle})) << needle;
  };
  auto json = toy_tokenizer();
  json["normalizer"] = {{"type", "NFC"}};
  expect_refused(json, "normalizer");
  json = toy_tokenizer();
  json["model"]["type"] = "WordPiece";
  expect_refused(json, "model.type is 'WordPiece'");
  json = toy_tokenizer();
  json["pre_tokenizer"]["add_prefix_space"] = true;
  expect_refused(json, "add_prefix_space");
  json = toy_tokenizer();
  json["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_refused(json, "pre-tokenizer 'Whitespace'");
  json = toy_tokenizer();
  json["added_tokens"][0]["lstrip"] = true;
  expect_refused(json, "lstrip");
  json = toy_tokenizer();
  json["model"]["merges"] = {"a b c"};
  expect_refused(json, "not two tokens");
  bittorch::io::write_file_atomically(path, "{");
  EXPECT_TRUE(throws_error_mentioning([&] { Tokenizer::from_file(path); }, {"not a JSON object"}));
}

}  // namespace
