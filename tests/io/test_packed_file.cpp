// save_packed / load_packed: round trip and every malformed-file case.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "io/packed_file_format.h"
#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::testing::read_all;
using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;
using bittorch::testing::write_all;

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
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"direct.btp", "model.btp"}));  // no temporary left
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
  // Cut short: said to be truncated, not corrupted (the checksum fails too).
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(good.substr(0, good.size() / 2)); }, {"bad.btp", "truncated"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(good.substr(0, good.size() - 1)); }, {"bad.btp", "truncated"}));
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
  std::string codes(records[0].trits);
  codes[0] = static_cast<char>(250);
  records[0].trits = codes;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); }, {"above 242"}));
  // Non-finite scales or biases behind a valid checksum.
  records = bittorch::io::parse_packed_file(good);
  records[0].scale[3] = std::nanf("");
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); },
                                      {"bad.btp", "non-finite scale", "row 3"}));
  records = bittorch::io::parse_packed_file(good);
  records[0].bias[0] = -INFINITY;
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(bittorch::io::write_packed_file(records)); },
                                      {"bad.btp", "non-finite bias", "row 0"}));
  // Only packable modules are saved.
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::save_packed(torch::nn::Sequential(torch::nn::Linear(3, 2)), dir.file("linear.btp")); },
      {"cannot save module", "Linear"}));
}

TEST(PackedFile, NonRegularFilesAreRefusedUpFront) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0644), 0);
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.path()); }, {dir.path(), "directory"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.file("fifo")); }, {"fifo", "FIFO"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed("/dev/zero"); }, {"/dev/zero", "character device"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::save_packed(trained_model(), dir.path()); },
                                      {dir.path(), "directory"}));
}

TEST(PackedFile, NonFiniteWeightsAreRefusedNamingTheLayer) {
  TempDir dir;
  auto model = trained_model();
  {
    torch::NoGradGuard no_grad;
    model[2]->as<bittorch::nn::TernaryLinear>()->weight[1][4] = std::nanf("");
  }
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::save_packed(model, dir.file("nan.btp")); },
                                      {"save_packed", "layer '2'", "weight", "non-finite", "[1, 4]"}));
  auto packed = bittorch::pack(trained_model());
  {
    torch::NoGradGuard no_grad;
    packed[0]->as<bittorch::nn::PackedTernaryLinear>()->scale[5] = INFINITY;
  }
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::save_packed(packed, dir.file("inf.btp")); },
                                      {"save_packed", "layer '0'", "scale", "inf", "[5]"}));
  EXPECT_TRUE(dir.entries().empty());
}

// Two writers saving to one path while a reader loads it: every load sees a whole model (a
// fixed temporary name once gave 0-byte files and failed renames here).
TEST(PackedFile, ConcurrentSavesAndLoads) {
  TempDir dir;
  const auto path = dir.file("model.btp");
  const auto first = bittorch::pack(trained_model());
  torch::manual_seed(61);
  const auto second = bittorch::pack(torch::nn::Sequential(bittorch::nn::TernaryLinear(37, 16), torch::nn::ReLU(),
                                                           bittorch::nn::TernaryLinear(16, 5)));
  bittorch::save_packed(first, path);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, loads{0};
  std::string failure;
  std::thread reader([&] {
    while (!done) {
      try {
        bittorch::load_packed(path);
      } catch (const c10::Error& error) {
        if (failures++ == 0) failure = error.what_without_backtrace();
      }
      ++loads;
    }
  });
  std::thread writer_a([&] { for (int i = 0; i < 40; ++i) bittorch::save_packed(first, path); });
  std::thread writer_b([&] { for (int i = 0; i < 40; ++i) bittorch::save_packed(second, path); });
  writer_a.join();
  writer_b.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures, 0) << "of " << loads << " loads; first: " << failure;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.btp"});
}

// The peak resident memory of this process (VmHWM), after resetting it to the current
// resident size; -1 where the kernel does not allow the reset.
int64_t reset_peak_kib() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.close();
  if (!clear) return -1;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

int64_t peak_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// A 8192x8192 layer (13.4 MB in the file, 16.8 MB of 2-bit codes loaded): loading it must
// take about the model's own memory (the file's bytes, then its codes, then the matrix), not
// the gigabytes that 64-bit intermediates per weight once took.
TEST(PackedFile, LoadingTakesAboutTheMemoryOfTheModel) {
  TempDir dir;
  const int64_t features = 8192;
  {
    bittorch::io::PackedModuleRecord layer;
    layer.kind = bittorch::io::ModuleKind::PackedTernaryLinear;
    layer.name = "big";
    layer.in_features = layer.out_features = features;
    std::string codes(static_cast<size_t>((features * features + 4) / 5), '\0');
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<char>((i * 7919) % 243);
    codes.back() = 121;  // 8192^2 codes leave one padding digit: 121 is five zero codes
    layer.trits = codes;
    layer.scale.assign(static_cast<size_t>(features), 0.01F);
    write_all(dir.file("big.btp"), bittorch::io::write_packed_file({layer}));
  }
  const int64_t before = reset_peak_kib();
  if (before < 0) GTEST_SKIP() << "this kernel does not let a process reset its peak memory (/proc/self/clear_refs)";
  const auto start = std::chrono::steady_clock::now();
  auto model = bittorch::load_packed(dir.file("big.btp"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t grown = (peak_kib() - before) * 1024;
  const int64_t model_bytes = model[0]->as<bittorch::nn::PackedTernaryLinear>()->weight_bytes();
  std::cout << "load_packed of an 8192x8192 layer: " << seconds << " s, peak memory +" << grown / 1048576.0
            << " MB for a model of " << model_bytes / 1048576.0 << " MB\n";
  EXPECT_LE(grown, 2.5 * static_cast<double>(model_bytes));
}

}  // namespace
