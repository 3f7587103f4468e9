// save_packed / load_packed: round trip and every malformed-file case.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "io/packed_file_format.h"
#include "reference.h"

namespace {

using bittorch::testing::throws_error_mentioning;

// A temporary directory, with POSIX calls: LibTorch exports std::filesystem symbols of its
// own build, which crash when a test links against them.
struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/bittorch_packed_XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~TempDir() {
    for (const auto& name : files) std::remove(name.c_str());
    ::rmdir(path.c_str());
  }
  std::string file(const std::string& name) {
    files.push_back(path + "/" + name);
    return files.back();
  }
  bool exists(const std::string& name) const { return std::ifstream(path + "/" + name).good(); }
  std::string path;
  std::vector<std::string> files;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

torch::nn::Sequential trained_model() {
  torch::manual_seed(60);
  return torch::nn::Sequential(bittorch::nn::TernaryLinear(37, 16), torch::nn::ReLU(),
                               bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(16, 5).bias(false)));
}

TEST(PackedFile, RoundTripIsBitExact) {
  TempDir dir;
  auto model = trained_model();
  auto packed = bittorch::pack(model);
  bittorch::save_packed(packed, dir.file("model.btp"));
  auto loaded = bittorch::load_packed(dir.file("model.btp"));
  ASSERT_EQ(loaded->size(), 3U);
  const auto x = torch::randn({4, 37});
  EXPECT_TRUE(torch::equal(loaded->forward(x), packed->forward(x)));
  const auto a = packed->named_buffers(), b = loaded->named_buffers();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  // A TernaryLinear model is packed on the way, to the same bytes.
  bittorch::save_packed(model, dir.file("direct.btp"));
  EXPECT_EQ(read_all(dir.file("direct.btp")), read_all(dir.file("model.btp")));
  EXPECT_FALSE(dir.exists("model.btp.tmp"));
}

TEST(PackedFile, MalformedFilesAreClearErrors) {
  TempDir dir;
  const auto path = dir.file("model.btp");
  bittorch::save_packed(trained_model(), path);
  const std::string good = read_all(path);
  const auto load_bytes = [&](const std::string& bytes) {
    write_all(dir.file("bad.btp"), bytes);
    bittorch::load_packed(dir.file("bad.btp"));
  };
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.file("missing.btp")); }, {"cannot open"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(""); }, {"truncated"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(good.substr(0, good.size() / 2)); }, {"checksum"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes("not a model file at all"); }, {"bad magic"}));
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x10);
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(flipped); }, {"checksum", "corrupted"}));
  std::string future = good;
  future[8] = 2;  // version field
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(future); }, {"version 2", "not supported"}));
  // A wrong shape with a valid checksum: the data no longer lines up with the header (what the
  // parser trips on first depends on the bytes that follow, so only the file is checked).
  auto records = bittorch::io::parse_packed_file(good);
  records[0].out_features += 1;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); }, {"bad.btp"}));
  records[0].out_features -= 2;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); }, {"bad.btp"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(good + "zz"); }, {"checksum"}));
  records = bittorch::io::parse_packed_file(good);
  records[0].out_features = 0;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); }, {"invalid shape"}));
  // Out-of-range trits behind a valid checksum.
  records = bittorch::io::parse_packed_file(good);
  records[0].trits[0] = 250;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); }, {"above 242"}));
  // Only packable modules are saved.
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::save_packed(torch::nn::Sequential(torch::nn::Linear(3, 2)), dir.file("linear.btp")); },
      {"cannot save module", "Linear"}));
}

}  // namespace
