// save_packed / load_packed / load_packed_into / read_packed_numbers: module trees as
// packed model files (docs/packed-format.md). The byte format is packed_file_format.cpp's,
// each kind of module module_codecs.cpp's; this file walks the trees.

#include <bittorch/io/files.h>
#include <bittorch/io/packed_model.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/packed_numbers.h>

#include "io/module_codecs.h"
#include "io/packed_file.h"
#include "io/packed_file_format.h"

#include <deque>
#include <map>

namespace bittorch::io {
namespace {

// The record of one module (without its arrays unless `storage`), or, for a container, its
// kind alone. `caller` names the function in errors.
ModuleRecord record_of(const torch::nn::Module& module, const std::string& path, std::deque<std::string>* storage,
                       const char* caller, ArrayDtype dtype) {
  ModuleRecord r;
  r.path = path;
  if (const auto* ternary = dynamic_cast<const nn::TernaryLinearImpl*>(&module)) {
    TORCH_CHECK(
        storage != nullptr, caller, ": module '", shown(path),
        "' is a TernaryLinear; a packed file loads into PackedTernaryLinear layers (bittorch::nn::pack the model "
        "first)");
    const auto packed = nn::pack_layer(*ternary, path, caller);  // packed on the way
    return record_of(*packed, path, storage, caller, dtype);
  }
  if (const auto* codec = codec_for(module)) {
    r.kind = codec->kind;
    // A packed layer's scale and bias stay float32: its kernels read them so.
    r.array_dtype = r.kind == ModuleKind::PackedTernaryLinear ? ArrayDtype::Float32 : dtype;
    codec->describe(module, path, r);
    if (storage != nullptr) codec->arrays(module, path, r, *storage);
    if (r.blobs.empty()) r.array_dtype = ArrayDtype::Float32;
    return r;
  }
  TORCH_CHECK(!module.named_children().is_empty(), caller, ": cannot save module '", shown(path), "' (", module.name(),
              "): packed files hold ", stored_kind_names());
  TORCH_CHECK(
      module.named_parameters(/*recurse=*/false).is_empty() && module.named_buffers(/*recurse=*/false).is_empty(),
      caller, ": module '", shown(path), "' (", module.name(),
      ") has parameters or buffers of its own, which packed files do not hold (only its children)");
  r.kind =
      dynamic_cast<const torch::nn::SequentialImpl*>(&module) != nullptr ? ModuleKind::Sequential : ModuleKind::Module;
  if (const auto* numbered = dynamic_cast<const nn::PackedNumbers*>(&module)) {
    r.ints = numbered->packed_ints();
    r.reals = numbered->packed_reals();
  }
  return r;
}

// The records of the tree under `module`, parents first.
void collect(const torch::nn::Module& module, const std::string& path, std::vector<ModuleRecord>& records,
             std::deque<std::string>* storage, const char* caller, ArrayDtype dtype = ArrayDtype::Float32) {
  records.push_back(record_of(module, path, storage, caller, dtype));
  const auto kind = records.back().kind;
  if (kind != ModuleKind::Sequential && kind != ModuleKind::Module) return;
  for (const auto& child : module.named_children()) {
    collect(*child.value(), path.empty() ? child.key() : path + "." + child.key(), records, storage, caller, dtype);
  }
}

// create(record), errors naming `caller` and the file.
torch::nn::AnyModule create(const ModuleRecord& record, const std::string& path, const char* caller) {
  try {
    return create(record);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, caller, ": '", path, "': module '", record.path, "' (", codec_for(record.kind)->name,
                "): ", error.what_without_backtrace());
  }
}

}  // namespace

void save_packed(const torch::nn::Module& model, const std::string& path, c10::ScalarType full_precision_dtype) {
  const char* caller = "bittorch::io::save_packed";
  ArrayDtype dtype = ArrayDtype::Float32;
  if (full_precision_dtype == at::kHalf) {
    dtype = ArrayDtype::Float16;
  } else if (full_precision_dtype == at::kBFloat16) {
    dtype = ArrayDtype::BFloat16;
  } else {
    TORCH_CHECK(full_precision_dtype == at::kFloat, caller,
                ": full-precision layers are stored in float32, float16 or ", "bfloat16, not ", full_precision_dtype);
  }
  std::vector<ModuleRecord> records;
  std::deque<std::string> storage;
  collect(model, "", records, &storage, caller, dtype);
  write_file_atomically(path, write_packed_file(records));
}

void save_packed(const torch::nn::Sequential& model, const std::string& path, c10::ScalarType full_precision_dtype) {
  save_packed(*model, path, full_precision_dtype);
}

torch::nn::Sequential load_packed(const std::string& path) {
  const char* caller = "bittorch::io::load_packed";
  const auto file = read_packed_file(path, caller);
  const auto& records = file.records;
  TORCH_CHECK(records[0].kind == ModuleKind::Sequential, caller, ": '", path,
              "': the model is not a Sequential but a module of your own, whose forward a file cannot hold: build "
              "it and use bittorch::io::load_packed_into");
  torch::nn::Sequential model;
  for (size_t i = 1; i < records.size(); ++i) {
    const auto& r = records[i];
    // A Sequential cannot hold containers in LibTorch: anything nested is a module of your own.
    TORCH_CHECK(parent_path(r.path).empty() && r.kind != ModuleKind::Sequential && r.kind != ModuleKind::Module, caller,
                ": '", path, "': module '", r.path,
                "' is or is inside a module of your own, whose forward a file cannot hold: build the model and use "
                "bittorch::load_packed_into");
    model->push_back(r.path, create(r, path, caller));
  }
  model->eval();  // an inference model: Dropout off
  return model;
}

PackedModuleNumbers read_packed_numbers(const std::string& path, const std::string& module_path) {
  const char* caller = "bittorch::io::read_packed_numbers";
  const auto file = read_packed_file(path, caller);
  for (const auto& r : file.records) {
    if (r.path == module_path) return {r.ints, r.reals};
  }
  TORCH_CHECK(false, caller, ": '", path, "' has no module '", shown(module_path), "'");
}

void load_packed_into(torch::nn::Module& model, const std::string& path) {
  const char* caller = "bittorch::io::load_packed_into";
  const auto file = read_packed_file(path, caller);
  std::vector<ModuleRecord> expected;
  collect(model, "", expected, nullptr, caller);
  std::map<std::string, const ModuleRecord*> in_file;
  for (const auto& r : file.records) in_file[r.path] = &r;
  TORCH_CHECK(expected.size() == file.records.size(), caller, ": '", path, "' holds ", file.records.size(),
              " modules, the model ", expected.size());
  // Everything is checked and read before the model is touched: (destination, source) pairs.
  const auto modules = model.named_modules();
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  for (const auto& want : expected) {
    const auto found = in_file.find(want.path);
    TORCH_CHECK(found != in_file.end(), caller, ": '", path, "' has no module '", shown(want.path), "'");
    TORCH_CHECK(same_numbers(want, *found->second), caller, ": '", path, "': module '", shown(want.path),
                "' differs from the model's (kind or options)");
    if (want.kind == ModuleKind::Sequential || want.kind == ModuleKind::Module) continue;
    const auto loaded = create(*found->second, path, caller).ptr();
    const auto target = modules[want.path];
    const auto pair_up = [&](const char* what, const auto& targets, const auto& sources) {
      for (const auto& item : targets) {
        const auto* from = sources.find(item.key());
        TORCH_CHECK(from != nullptr && from->sizes() == item.value().sizes(), caller, ": '", path, "': module '",
                    shown(want.path), "': ", what, " '", item.key(), "' does not match the file's");
        copies.emplace_back(item.value(), *from);
      }
    };
    pair_up("parameter", target->named_parameters(false), loaded->named_parameters(false));
    pair_up("buffer", target->named_buffers(false), loaded->named_buffers(false));
  }
  torch::NoGradGuard no_grad;
  for (auto& [to, from] : copies) to.copy_(from);
}

}  // namespace bittorch::io
