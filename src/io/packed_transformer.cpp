// io::load_packed_transformer: a TransformerLM built straight from a packed file's records.

#include <bittorch/io/packed_transformer.h>

#include "io/module_codecs.h"
#include "io/packed_file.h"

#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <unordered_map>

namespace bittorch::io {
namespace {

// The file's records by path, each found with the kind the model needs there.
class Records {
 public:
  Records(const PackedFile& file, const std::string& path, const char* caller) : path_(path), caller_(caller) {
    for (const auto& r : file.records) by_path_[r.path] = &r;
  }

  const ModuleRecord& at(const std::string& module_path, ModuleKind kind) const {
    const auto found = by_path_.find(module_path);
    const auto* codec = codec_for(kind);
    const char* kind_name = codec != nullptr ? codec->name : "module";
    TORCH_CHECK(found != by_path_.end(), caller_, ": '", path_, "' has no module '", shown(module_path), "' (",
                kind_name, ") of the TransformerLM its root describes");
    TORCH_CHECK(found->second->kind == kind, caller_, ": '", path_, "': module '", shown(module_path), "' is not a ",
                kind_name, " as the TransformerLM its root describes needs");
    return *found->second;
  }

  bool has(const std::string& module_path) const { return by_path_.count(module_path) > 0; }
  size_t size() const { return by_path_.size(); }

  // Checks that `file` has the numbers the model's module has (`want`, from describe).
  void expect_numbers(const ModuleRecord& want, const ModuleRecord& file) const {
    TORCH_CHECK(same_numbers(want, file), caller_, ": '", path_, "': module '", shown(want.path),
                "' has other sizes or options than the TransformerLM its root describes");
  }

  // `load` (codec work on a record), errors naming the file and the module.
  template <typename Load>
  auto guarded(const ModuleRecord& r, Load&& load) const {
    try {
      return load();
    } catch (const c10::Error& error) {
      TORCH_CHECK(false, caller_, ": '", path_, "': module '", shown(r.path), "' (", codec_for(r.kind)->name,
                  "): ", error.what_without_backtrace());
    }
  }

 private:
  std::string path_;
  const char* caller_;
  std::unordered_map<std::string, const ModuleRecord*> by_path_;
};

// A record of `kind` at `path` with these numbers, to compare a file's with.
ModuleRecord expected(ModuleKind kind, const std::string& path, std::vector<int64_t> ints,
                      std::vector<double> reals = {}) {
  ModuleRecord r;
  r.kind = kind;
  r.path = path;
  r.ints = std::move(ints);
  r.reals = std::move(reals);
  return r;
}

}  // namespace

nn::TransformerLM load_packed_transformer(const std::string& path, c10::Device device) {
  const char* caller = "bittorch::io::load_packed_transformer";
  const auto file = read_packed_file(path, caller);
  nn::TransformerDescription description;
  try {
    TORCH_CHECK(file.records[0].kind == ModuleKind::Module, "its root is not a module of your own");
    description = nn::transformer_from_numbers(file.records[0].ints, file.records[0].reals);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, caller, ": '", path, "' holds no TransformerLM at its root: ", error.what_without_backtrace());
  }
  const auto& o = description.options;
  const Records records(file, path, caller);
  // The options against the records before anything of their size is made: the embedding
  // and head (unless tied) (vocabulary and width, whose arrays the file holds) and the number of blocks.
  const auto& embedding = records.at("embedding", ModuleKind::Embedding);
  records.expect_numbers(expected(ModuleKind::Embedding, "embedding", {o.vocab_size(), o.width(), -1}), embedding);
  if (!o.tied_embeddings()) {  // tied, the embedding's array serves as the head's
    records.expect_numbers(expected(ModuleKind::Linear, "head", {o.width(), o.vocab_size(), 0}),
                           records.at("head", ModuleKind::Linear));
  }
  records.at("blocks." + std::to_string(o.layers() - 1), ModuleKind::Module);
  TORCH_CHECK(!records.has("blocks." + std::to_string(o.layers())), caller, ": '", path,
              "' holds more blocks than the ", o.layers(), " its root describes");

  // The projections of the kind and numbers the file stores (made on the CPU and moved to
  // `device` at once), then every module's arrays from its record: host memory holds the
  // file and one layer's codes at a time.
  const bool ternary = description.projections.has_value();
  const auto make_projection = [&](const std::string& module_path, int64_t in, int64_t out) {
    const auto kind = ternary ? ModuleKind::PackedTernaryLinear : ModuleKind::Linear;
    const auto& r = records.at(module_path, kind);
    auto want = expected(kind, module_path, {in, out, 0});
    if (ternary) quant::append_numbers(*description.projections, want.ints, want.reals);
    records.expect_numbers(want, r);
    auto projection = records.guarded(r, [&] { return codec_for(kind)->make(r); });
    projection.ptr()->to(device);
    return projection;
  };
  nn::TransformerLM model(o, make_projection);
  // The file's dtype on a GPU; on the CPU float32 (see the header).
  const auto dtype = device.is_cuda() ? scalar_type_of(embedding.array_dtype) : at::kFloat;
  model->to(device, dtype);  // the packed projections keep their formats

  // The model's modules and the file's are the same set.
  const auto modules = model->named_modules();
  TORCH_CHECK(modules.size() == records.size(), caller, ": '", path, "' holds ", records.size(),
              " modules, the TransformerLM its root describes ", modules.size());
  for (const auto& item : modules) {
    const auto* codec = codec_for(*item.value());
    if (codec == nullptr) {  // a container
      records.at(item.key(), ModuleKind::Module);
      continue;
    }
    const auto& r = records.at(item.key(), codec->kind);
    auto want = expected(codec->kind, item.key(), {});
    codec->describe(*item.value(), item.key(), want);
    records.expect_numbers(want, r);
    records.guarded(r, [&] { codec->load(r, *item.value()); });
  }
  model->eval();
  return model;
}

}  // namespace bittorch::io
