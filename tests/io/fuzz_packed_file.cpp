// Mutation fuzzing of the packed model file parser, built with AddressSanitizer and
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
using bittorch::io::PackedModuleRecord;

std::string valid_file(std::mt19937_64& rng) {
  std::vector<PackedModuleRecord> records;
  std::vector<std::string> codes;
  codes.reserve(3);  // the records' views stay valid
  const int layers = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < layers; ++i) {
    PackedModuleRecord linear;
    linear.kind = ModuleKind::PackedTernaryLinear;
    linear.name = "layer" + std::to_string(i);
    linear.in_features = 1 + static_cast<int64_t>(rng() % 40);
    linear.out_features = 1 + static_cast<int64_t>(rng() % 12);
    linear.activation_bits = rng() % 2 == 0 ? 0 : 8;
    codes.emplace_back(static_cast<size_t>((linear.in_features * linear.out_features + 4) / 5), '\0');
    for (auto& byte : codes.back()) byte = static_cast<char>(rng() % 243);
    linear.trits = codes.back();
    linear.scale.assign(linear.out_features, 0.5F);
    if (rng() % 2 == 0) linear.bias.assign(linear.out_features, -1.0F);
    records.push_back(linear);
    PackedModuleRecord relu;
    relu.name = "relu" + std::to_string(i);
    records.push_back(relu);
  }
  return bittorch::io::write_packed_file(records);
}

void mutate(std::string& bytes, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t at = bytes.empty() ? 0 : rng() % bytes.size();
    switch (rng() % 6) {
      case 0: if (!bytes.empty()) bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8))); break;
      case 1: if (!bytes.empty()) bytes[at] = static_cast<char>(rng()); break;
      case 2: bytes.resize(at); break;
      case 3: bytes.insert(at, 1 + rng() % 8, static_cast<char>(rng())); break;
      case 4: if (!bytes.empty()) bytes.erase(at, 1 + rng() % 8); break;
      default: bytes.append(1 + rng() % 16, static_cast<char>(rng())); break;
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
    std::string bytes = valid_file(rng);
    if (bittorch::io::parse_packed_file(bytes).empty()) {
      std::fprintf(stderr, "a valid file parsed to nothing\n");
      return 1;
    }
    mutate(bytes, rng);
    if (rng() % 2 == 0) fix_checksum(bytes);
    try {
      const auto records = bittorch::io::parse_packed_file(bytes);
      for (const auto& r : records) {
        if (r.kind == ModuleKind::PackedTernaryLinear &&
            (r.trits.size() != static_cast<size_t>((r.in_features * r.out_features + 4) / 5) ||
             r.scale.size() != static_cast<size_t>(r.out_features))) {
          std::fprintf(stderr, "iteration %ld: inconsistent record accepted\n", i);
          return 1;
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
