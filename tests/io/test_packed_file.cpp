// save_packed / load_packed: round trip and every malformed-file case.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <malloc.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <zlib.h>

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
  future[8] = 4;  // version field
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(future); }, {"version 4", "not supported"}));
  // Records of a valid file changed behind a valid checksum: [0] the Sequential, [1] layer "0",
  // [2] the ReLU, [3] layer "2".
  const auto with = [&](const std::function<void(std::vector<bittorch::io::ModuleRecord>&)>& change) {
    auto records = bittorch::io::parse_packed_file(good);
    change(records);
    return bittorch::io::write_packed_file(records);
  };
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(with([](auto& r) { r[1].ints[1] += 1; })); },
                                      {"bad.btp", "module '0'", "codes need 126 bytes"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(with([](auto& r) { r[1].ints[1] = 0; })); },
                                      {"bad.btp", "module '0'", "invalid out_features 0"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(with([](auto& r) { r[1].ints.pop_back(); })); },
                                      {"module '0'", "5 integers", "expected 4 or 6"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(with([](auto& r) { r[2].path = "7.relu"; })); },
                                      {"module '7.relu'", "before its parent"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { load_bytes(with([](auto& r) { r[3].path = "0"; })); }, {"module '0'", "twice"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_bytes(good + "zz"); }, {"checksum"}));
  // Out-of-range trits, non-finite scales and biases behind a valid checksum.
  std::string codes, scale, bias;
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        load_bytes(with([&](auto& r) {
          codes = std::string(r[1].blobs[0]);
          codes[0] = static_cast<char>(250);
          r[1].blobs[0] = codes;
        }));
      },
      {"above 242"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        load_bytes(with([&](auto& r) {
          scale = std::string(r[1].blobs[1]);
          const float nan = std::nanf("");
          std::memcpy(&scale[3 * sizeof(float)], &nan, sizeof(float));
          r[1].blobs[1] = scale;
        }));
      },
      {"bad.btp", "module '0'", "non-finite scale", "row 3"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        load_bytes(with([&](auto& r) {
          bias = std::string(r[1].blobs[2]);
          const float inf = -INFINITY;
          std::memcpy(&bias[0], &inf, sizeof(float));
          r[1].blobs[2] = bias;
        }));
      },
      {"bad.btp", "non-finite bias", "row 0"}));
  // Only the kinds a file holds are saved.
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bittorch::save_packed(torch::nn::Sequential(torch::nn::Conv1d(3, 2, 1)), dir.file("conv.btp")); },
      {"cannot save module '0'", "Conv1d", "Linear, Embedding"}));
}

// Full-precision layers around the ternary ones, each kind a file holds: loaded as saved.
TEST(PackedFile, EveryStoredKindRoundTrips) {
  TempDir dir;
  torch::manual_seed(63);
  torch::nn::Sequential model(
      torch::nn::Embedding(torch::nn::EmbeddingOptions(10, 8).padding_idx(0)),
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({8}).eps(1e-6)),
      bittorch::nn::RMSNorm(bittorch::nn::RMSNormOptions(8).eps(1e-5)), torch::nn::Linear(8, 8),
      torch::nn::GELU(torch::nn::GELUOptions().approximate("tanh")), bittorch::nn::TernaryLinear(8, 6),
      torch::nn::SiLU(), torch::nn::Dropout(0.25), torch::nn::Tanh(),
      bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(6, 3).quant(
          bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean).activation_bits(8))),
      torch::nn::Sigmoid());
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.uniform_(-1, 1);  // LayerNorm's affine parameters too
  }
  auto packed = bittorch::pack(model);
  packed->eval();
  bittorch::save_packed(model, dir.file("all.btp"));
  auto loaded = bittorch::load_packed(dir.file("all.btp"));
  EXPECT_FALSE(loaded->is_training());
  ASSERT_EQ(loaded->size(), packed->size());
  const auto x = torch::randint(0, 10, {5, 7});
  EXPECT_TRUE(torch::equal(loaded->forward(x), packed->forward(x)));
  for (size_t i = 0; i < packed->size(); ++i) {
    std::ostringstream a, b;
    packed[i]->pretty_print(a);
    loaded[i]->pretty_print(b);
    EXPECT_EQ(b.str(), a.str());  // options, the quantization config included
  }
  // A module of our own with parameters of its own is refused, not saved without them.
  struct Scaled : torch::nn::Module {
    Scaled() {
      register_parameter("gain", torch::ones(3));
      register_module("fc", torch::nn::Linear(3, 3));
    }
  };
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::save_packed(Scaled(), dir.file("own.btp")); },
                                      {"(root)", "parameters or buffers of its own"}));
}

// Full-precision layers stored in float16 or bfloat16: each weight is the float32 one rounded to
// that type, the ternary layers are as in a float32 file, and the file is smaller.
TEST(PackedFile, HalfPrecisionArrays) {
  TempDir dir;
  torch::manual_seed(64);
  torch::nn::Sequential model(torch::nn::Embedding(10, 8), bittorch::nn::RMSNorm(8),
                              torch::nn::LayerNorm(torch::nn::LayerNormOptions({8})), torch::nn::Linear(8, 8),
                              bittorch::nn::TernaryLinear(8, 4));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.uniform_(-1, 1);
  }
  bittorch::save_packed(model, dir.file("f32.btp"));
  auto f32 = bittorch::load_packed(dir.file("f32.btp"));
  const auto x = torch::randint(0, 10, {3, 5});
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    const auto path = dir.file("half.btp");
    bittorch::save_packed(model, path, dtype);
    EXPECT_LT(bittorch::io::regular_file_size(path), bittorch::io::regular_file_size(dir.file("f32.btp")));
    auto loaded = bittorch::load_packed(path);
    for (const auto& p : model->named_parameters()) {
      if (p.key().rfind("4.", 0) == 0) continue;  // the ternary layer: packed, compared below
      EXPECT_TRUE(torch::equal(loaded->named_parameters()[p.key()], p.value().to(dtype).to(torch::kFloat)))
          << p.key() << " " << dtype;
    }
    EXPECT_TRUE(torch::equal(loaded[4]->as<bittorch::nn::PackedTernaryLinear>()->packed,
                             f32[4]->as<bittorch::nn::PackedTernaryLinear>()->packed));
    EXPECT_TRUE(torch::equal(loaded[4]->as<bittorch::nn::PackedTernaryLinear>()->scale,
                             f32[4]->as<bittorch::nn::PackedTernaryLinear>()->scale));
    const auto records = bittorch::io::parse_packed_file(read_all(path));
    EXPECT_EQ(records[5].array_dtype, bittorch::io::ArrayDtype::Float32);  // the packed layer's scale
    EXPECT_EQ(records[1].array_dtype,
              dtype == torch::kHalf ? bittorch::io::ArrayDtype::Float16 : bittorch::io::ArrayDtype::BFloat16);
    EXPECT_TRUE(torch::allclose(loaded->forward(x), f32->forward(x), 0.05, 0.05)) << dtype;
  }
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::save_packed(model, dir.file("d.btp"), torch::kDouble); },
                                      {"float32, float16 or bfloat16", "Double"}));
}

// Version 2 files (no array dtype: float32) still load.
TEST(PackedFile, Version2FilesStillLoad) {
  TempDir dir;
  torch::manual_seed(65);
  torch::nn::Sequential model(torch::nn::Linear(6, 6), torch::nn::ReLU(), bittorch::nn::TernaryLinear(6, 3));
  bittorch::save_packed(model, dir.file("v3.btp"));
  const auto bytes = read_all(dir.file("v3.btp"));
  write_all(dir.file("v2.btp"), bittorch::io::write_packed_file(bittorch::io::parse_packed_file(bytes), 2));
  EXPECT_EQ(read_all(dir.file("v2.btp")).size(), bytes.size() - 4);  // one dtype byte per record fewer
  const auto x = torch::randn({2, 6});
  EXPECT_TRUE(torch::equal(bittorch::load_packed(dir.file("v2.btp"))->forward(x),
                           bittorch::load_packed(dir.file("v3.btp"))->forward(x)));
}

// Version 1 files, written here byte by byte from docs/packed-format.md, still load.
TEST(PackedFile, Version1FilesStillLoad) {
  TempDir dir;
  auto packed = bittorch::pack(trained_model());
  std::string bytes("BTPACK\r\n", 8);
  const auto put = [&](auto value) { bytes.append(reinterpret_cast<const char*>(&value), sizeof(value)); };
  put(uint32_t{1});
  put(uint32_t{3});
  for (size_t i = 0; i < packed->size(); ++i) {
    const std::string name = std::to_string(i);
    const auto* layer = packed[i]->as<bittorch::nn::PackedTernaryLinear>();
    put(uint8_t{layer != nullptr ? uint8_t{1} : uint8_t{2}});
    put(static_cast<uint32_t>(name.size()));
    bytes += name;
    if (layer == nullptr) continue;
    put(layer->options.in_features());
    put(layer->options.out_features());
    put(uint8_t{0});
    put(uint8_t{layer->bias.defined()});
    put(uint8_t{1});
    const auto trits = bittorch::quant::trits_from_packed(layer->packed, layer->options.in_features());
    bytes.append(reinterpret_cast<const char*>(trits.data()), trits.size());
    bytes.append(reinterpret_cast<const char*>(layer->scale.data_ptr<float>()), layer->scale.numel() * 4);
    if (layer->bias.defined())
      bytes.append(reinterpret_cast<const char*>(layer->bias.data_ptr<float>()), layer->bias.numel() * 4);
  }
  put(static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size()))));
  write_all(dir.file("v1.btp"), bytes);
  const auto x = torch::randn({4, 37});
  EXPECT_TRUE(torch::equal(bittorch::load_packed(dir.file("v1.btp"))->forward(x), packed->forward(x)));
  auto into = bittorch::pack(
      torch::nn::Sequential(bittorch::nn::TernaryLinear(37, 16), torch::nn::ReLU(),
                            bittorch::nn::TernaryLinear(bittorch::nn::TernaryLinearOptions(16, 5).bias(false))));
  bittorch::load_packed_into(*into, dir.file("v1.btp"));
  EXPECT_TRUE(torch::equal(into->forward(x), packed->forward(x)));
}

TEST(PackedFile, NonRegularFilesAreRefusedUpFront) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0644), 0);
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.path()); }, {dir.path(), "directory"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed(dir.file("fifo")); }, {"fifo", "FIFO"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::load_packed("/dev/zero"); }, {"/dev/zero", "character device"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { bittorch::save_packed(trained_model(), dir.path()); }, {dir.path(), "directory"}));
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
  std::thread writer_a([&] {
    for (int i = 0; i < 40; ++i) bittorch::save_packed(first, path);
  });
  std::thread writer_b([&] {
    for (int i = 0; i < 40; ++i) bittorch::save_packed(second, path);
  });
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

// A 8192x8192 layer (13.4 MB in the file, 16.8 MB of 2-bit codes loaded): loading it takes
// about the model's own memory (the file's bytes, then the matrix decoded straight from
// them), not gigabytes of intermediates per weight.
TEST(PackedFile, LoadingTakesAboutTheMemoryOfTheModel) {
  TempDir dir;
  const int64_t features = 8192;
  {
    bittorch::io::ModuleRecord root, layer;
    root.kind = bittorch::io::ModuleKind::Sequential;
    layer.kind = bittorch::io::ModuleKind::PackedTernaryLinear;
    layer.path = "big";
    layer.ints = {features, features, 0, 0, 1, 0};
    layer.reals = {0.05};
    std::string codes(static_cast<size_t>((features * features + 4) / 5), '\0');
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<char>((i * 7919) % 243);
    codes.back() = 121;  // 8192^2 codes leave one padding digit: 121 is five zero codes
    const std::vector<float> scale(static_cast<size_t>(features), 0.01F);
    layer.blobs = {codes, std::string_view(reinterpret_cast<const char*>(scale.data()), scale.size() * sizeof(float))};
    write_all(dir.file("big.btp"), bittorch::io::write_packed_file({root, layer}));
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

// load_packed_transformer builds the model straight from the file's records: its peak memory
// is within 1.5x the file's size plus the model (a 19M-parameter ternary model: 3.8 MB in the
// file, 4.9 MB loaded; a float32 model on the way would add 76 MB), and it gives the packed
// model's logits.
TEST(PackedFile, TransformerLoadsInAboutTheFileAndTheModel) {
  // Freed blocks of 256 KB and more go back to the system at once (not kept by malloc for
  // the next allocation), so that the model built for the file leaves no memory the loader
  // could reuse unseen.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  TempDir dir;
  const auto options = bittorch::nn::TransformerOptions().layers(6).width(512).heads(8).context(32);
  const auto tokens = torch::randint(0, 256, {1, 9});
  torch::Tensor expected;
  {
    torch::manual_seed(61);
    bittorch::nn::TransformerLM model(options);
    bittorch::nn::convert_to_ternary(*model,
                                     bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean),
                                     bittorch::nn::is_transformer_projection);
    bittorch::nn::pack(*model);
    model->eval();
    torch::NoGradGuard no_grad;
    expected = model->forward(tokens);
    bittorch::io::save_packed(*model, dir.file("lm.btp"));
  }
  const auto file_bytes = static_cast<double>(bittorch::io::regular_file_size(dir.file("lm.btp")));
  const int64_t before = reset_peak_kib();
  if (before < 0) GTEST_SKIP() << "this kernel does not let a process reset its peak memory (/proc/self/clear_refs)";
  const auto start = std::chrono::steady_clock::now();
  auto model = bittorch::io::load_packed_transformer(dir.file("lm.btp"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double grown = static_cast<double>((peak_kib() - before) * 1024);
  double model_bytes = 0;
  for (const auto& t : model->parameters()) model_bytes += static_cast<double>(t.numel() * t.element_size());
  for (const auto& t : model->buffers()) model_bytes += static_cast<double>(t.numel() * t.element_size());
  std::cout << "load_packed_transformer: " << seconds << " s, peak memory +" << grown / 1048576.0 << " MB for a "
            << file_bytes / 1048576.0 << " MB file and a " << model_bytes / 1048576.0 << " MB model\n";
  EXPECT_LE(grown, 1.5 * file_bytes + model_bytes);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(model->forward(tokens), expected));
}

// A language-model file edited behind a valid checksum is refused naming the file and what is
// wrong, before anything of the edited size is allocated: sizes the arrays do not hold (blocks,
// the MLP's width, the vocabulary), options that describe no model, non-finite arrays and
// scales that are not positive.
TEST(PackedFile, CraftedTransformerFilesAreRefusedNamingTheField) {
  TempDir dir;
  torch::manual_seed(63);
  bittorch::nn::TransformerLM model(bittorch::nn::TransformerOptions().layers(2).width(16).heads(2).context(8));
  bittorch::nn::convert_to_ternary(*model, {}, bittorch::nn::is_transformer_projection);
  bittorch::nn::pack(*model);
  bittorch::io::save_packed(*model, dir.file("lm.btp"), torch::kBFloat16);
  const std::string good = read_all(dir.file("lm.btp"));
  using Records = std::vector<bittorch::io::ModuleRecord>;
  const auto load_with = [&](const std::function<void(Records&)>& change) {
    auto records = bittorch::io::parse_packed_file(good);
    change(records);
    write_all(dir.file("bad.btp"), bittorch::io::write_packed_file(records));
    bittorch::io::load_packed_transformer(dir.file("bad.btp"));
  };
  const auto record = [](Records& records, const std::string& path) -> bittorch::io::ModuleRecord& {
    for (auto& r : records) {
      if (r.path == path) return r;
    }
    throw std::runtime_error("no record " + path);
  };
  // Root integers: vocab_size, layers, width, heads, context, mlp_ratio, mlp, ternary, ...;
  // reals: rope_base, norm_eps, threshold_factor.
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].ints[1] = int64_t{1} << 40; }); },
                                      {"bad.btp", "blocks.1099511627775"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].ints[5] = int64_t{1} << 30; }); },
                                      {"bad.btp", "blocks.0.mlp.up", "other sizes"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].ints[0] = int64_t{1} << 40; }); },
                                      {"bad.btp", "embedding", "other sizes"}));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 10.0);
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].reals[0] = INFINITY; }); },
                                      {"bad.btp", "rope_base"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].ints[3] = 3; }); },
                                      {"bad.btp", "multiple of heads"}));
  EXPECT_TRUE(throws_error_mentioning([&] { load_with([](Records& r) { r[0].ints[4] = int64_t{1} << 40; }); },
                                      {"bad.btp", "context must be at most 1048576"}));
  std::string embedding;
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        load_with([&](Records& r) {
          embedding = std::string(record(r, "embedding").blobs[0]);
          embedding[2 * 37 + 1] = static_cast<char>(0x7F);  // a bfloat16 of exponent 255 and a
          embedding[2 * 37] = static_cast<char>(0xC0);      // nonzero mantissa: NaN
          record(r, "embedding").blobs[0] = embedding;
        });
      },
      {"bad.btp", "module 'embedding'", "non-finite weight", "row 2"}));
  std::string scale;
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        load_with([&](Records& r) {
          scale = std::string(record(r, "blocks.1.attention.q").blobs[1]);
          const float negative = -0.5F;
          std::memcpy(&scale[5 * sizeof(float)], &negative, sizeof(float));
          record(r, "blocks.1.attention.q").blobs[1] = scale;
        });
      },
      {"bad.btp", "module 'blocks.1.attention.q'", "scale that is not positive", "row 5"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { load_with([](Records& r) { r.pop_back(); }); }, {"bad.btp", "no module 'head'"}));
}

}  // namespace
