// io::write_safetensors and io::read_safetensors: a round trip of every dtype, layouts and
// metadata; malformed files refused with the file (and tensor) named. Files written by the
// safetensors package itself: tests/interop.

#include "reference.h"
#include "temp_dir.h"

#include <bittorch/io/files.h>
#include <bittorch/io/safetensors.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

namespace {

using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;
namespace io = bittorch::io;

TEST(Safetensors, RoundTripsEveryDtypeAndLayout) {
  TempDir dir;
  torch::manual_seed(1);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto dtype :
       {torch::kDouble, torch::kFloat, torch::kHalf, torch::kBFloat16, torch::kLong, torch::kInt, torch::kShort,
        torch::kChar, torch::kByte, torch::kBool, torch::kFloat8_e4m3fn, torch::kFloat8_e5m2}) {
    // Odd sizes, so that later tensors start at offsets their element size does not divide.
    tensors.emplace_back(c10::toString(dtype), (torch::randn({3, 7}) * 4).to(dtype));
  }
  tensors.emplace_back("strided", torch::randn({4, 6}).t());
  tensors.emplace_back("scalar", torch::tensor(2.5));
  tensors.emplace_back("empty", torch::zeros({0, 3}));
  io::write_safetensors(dir.file("t.safetensors"), tensors, {{"format", "pt"}});
  const auto file = io::read_safetensors(dir.file("t.safetensors"));
  EXPECT_EQ(file.metadata.at("format"), "pt");
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(file.tensors[i].first, tensors[i].first);  // in the order written
    const auto& got = file.tensors[i].second;
    EXPECT_EQ(got.scalar_type(), tensors[i].second.scalar_type()) << tensors[i].first;
    EXPECT_EQ(got.sizes(), tensors[i].second.sizes()) << tensors[i].first;
    EXPECT_TRUE(torch::equal(got.reshape(-1).view(torch::kByte), tensors[i].second.reshape(-1).view(torch::kByte)))
        << tensors[i].first;
  }
  EXPECT_TRUE(throws_error_mentioning([&] { file.at("missing"); }, {"t.safetensors", "'missing'"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        io::write_safetensors(dir.file("u.safetensors"), {{"a", torch::ones(1)}, {"a", torch::ones(1)}});
      },
      {"'a'", "given twice"}));
}

// A file of `header` (JSON) and `data_size` zero bytes of data, its header size as given.
std::string file_of(const std::string& header, size_t data_size, int64_t header_size = -1) {
  const uint64_t size = header_size < 0 ? header.size() : static_cast<uint64_t>(header_size);
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &size, 8);
  return bytes + header + std::string(data_size, '\0');
}

TEST(Safetensors, RefusesMalformedFiles) {
  TempDir dir;
  const auto path = dir.file("bad.safetensors");
  const auto expect_refused = [&](const std::string& bytes, const std::vector<std::string>& needles) {
    io::write_file_atomically(path, bytes);
    auto all = needles;
    all.push_back(path);
    EXPECT_TRUE(throws_error_mentioning([&] { io::read_safetensors(path); }, all)) << needles[0];
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  io::write_file_atomically(path, file_of(ok, 8));
  EXPECT_EQ(io::read_safetensors(path).at("a").numel(), 2);
  expect_refused("abc", {"shorter than a safetensors header"});
  expect_refused(file_of(ok, 8, 1 << 20), {"header size 1048576 exceeds the file"});
  expect_refused(file_of("[1, 2]", 0), {"not a JSON object"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8), {"not a JSON object"});
  expect_refused(file_of(R"({"a":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}})", 16), {"'a'", "'C64'"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), {"'a'", "needs 12"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8),
                 {"'a'", "outside the file's 8 bytes"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), {"non-negative"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[2]}})", 8), {"'a'", "data_offsets"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         8),
                 {"overlaps"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                 {"4 bytes before tensor 'a'"});
  expect_refused(file_of(ok, 9), {"1 bytes after the last tensor"});
  expect_refused(file_of(R"({"__metadata__":{"k":1}})", 0), {"__metadata__ 'k' is not a string"});
}

}  // namespace
