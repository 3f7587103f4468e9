// Mutation fuzzing of the packed model file parser (version 3 files), built with AddressSanitizer and
// UndefinedBehaviorSanitizer (no LibTorch in this binary): from valid files, mutated copies
// (bit flips, byte overwrites, truncations, insertions, deletions, appended bytes), half of
// them with the checksum recomputed so that the parser behind it is reached. Every parse must
// either return records or throw PackedFileError; anything else, or a sanitizer report, fails.
//
// Usage: bittorch_fuzz_packed_file [ITERATIONS] [SEED]

#include "io/packed_file_format.h"

#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using bittorch::io::ModuleKind;
using bittorch::io::ModuleRecord;

// A random tree: a root container and 1-6 modules of random kinds, numbers and arrays under it
// (the parser does not interpret them), some inside a container of their own.
std::string valid_file(std::mt19937_64& rng, std::vector<std::string>& arrays) {
  std::vector<ModuleRecord> records(1);
  records[0].kind = rng() % 2 == 0 ? ModuleKind::Sequential : ModuleKind::Module;
  arrays.clear();
  arrays.reserve(32);  // the records' views stay valid
  std::string container;
  const int modules = 1 + static_cast<int>(rng() % 6);
  for (int i = 0; i < modules; ++i) {
    ModuleRecord m;
    m.kind = static_cast<ModuleKind>(1 + rng() % bittorch::io::kLastModuleKind);
    m.array_dtype = static_cast<bittorch::io::ArrayDtype>(rng() % (bittorch::io::kLastArrayDtype + 1));
    m.path = (container.empty() ? "" : container + ".") + "m" + std::to_string(i);
    if (m.kind == ModuleKind::Module && container.empty()) container = m.path;
    for (uint64_t k = rng() % 7; k > 0; --k) m.ints.push_back(static_cast<int64_t>(rng() % 100));
    for (uint64_t k = rng() % 3; k > 0; --k) m.reals.push_back(static_cast<double>(rng() % 1000) / 7.0);
    for (uint64_t k = rng() % 4; k > 0; --k) {
      arrays.emplace_back(static_cast<size_t>(rng() % 64), '\0');
      for (auto& byte : arrays.back()) byte = static_cast<char>(rng());
      m.blobs.push_back(arrays.back());
    }
    records.push_back(std::move(m));
  }
  return bittorch::io::write_packed_file(records);
}

void mutate(std::string& bytes, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t at = bytes.empty() ? 0 : rng() % bytes.size();
    switch (rng() % 6) {
      case 0:
        if (!bytes.empty()) bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        if (!bytes.empty()) bytes[at] = static_cast<char>(rng());
        break;
      case 2:
        bytes.resize(at);
        break;
      case 3:
        bytes.insert(at, 1 + rng() % 8, static_cast<char>(rng()));
        break;
      case 4:
        if (!bytes.empty()) bytes.erase(at, 1 + rng() % 8);
        break;
      default:
        bytes.append(1 + rng() % 16, static_cast<char>(rng()));
        break;
    }
  }
}

void fix_checksum(std::string& bytes) {
  if (bytes.size() < 4) return;
  const uint32_t crc = static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size() - 4)));
  std::memcpy(&bytes[bytes.size() - 4], &crc, 4);
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  const unsigned long long seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  if (iterations < 1) {
    std::fprintf(stderr, "usage: bittorch_fuzz_packed_file [ITERATIONS >= 1] [SEED]\n");
    return 2;
  }
  std::mt19937_64 rng(seed);
  long parsed = 0, rejected = 0;
  for (long i = 0; i < iterations; ++i) {
    std::vector<std::string> arrays;
    std::string bytes = valid_file(rng, arrays);
    if (bittorch::io::parse_packed_file(bytes).empty()) {
      std::fprintf(stderr, "a valid file parsed to nothing\n");
      return 1;
    }
    mutate(bytes, rng);
    if (rng() % 2 == 0) fix_checksum(bytes);
    try {
      const auto records = bittorch::io::parse_packed_file(bytes);
      for (const auto& r : records) {
        for (const auto& blob : r.blobs) {
          if (blob.data() < bytes.data() || blob.data() + blob.size() > bytes.data() + bytes.size()) {
            std::fprintf(stderr, "iteration %ld: an array outside the file accepted\n", i);
            return 1;
          }
        }
      }
      ++parsed;
    } catch (const bittorch::io::PackedFileError&) {
      ++rejected;
    }
  }
  std::printf("%ld mutated files: %ld rejected with an error, %ld still valid\n", iterations, rejected, parsed);
  return 0;
}
