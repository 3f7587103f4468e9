// bittorch::save_packed / load_packed: packed models as files (docs/packed-format.md).

#include <bittorch/io/files.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/quant/packing.h>

#include "io/packed_file_format.h"
#include "nn/pack_layer.h"
#include "ops/checks.h"

#include <torch/nn/modules/activation.h>

namespace bittorch {
namespace {

// The record of `layer`; its codes are kept in `codes`, which the record's view points into.
io::PackedModuleRecord record_of(const std::string& name, const nn::PackedTernaryLinearImpl& layer,
                                 std::vector<uint8_t>& codes) {
  io::PackedModuleRecord r;
  r.kind = io::ModuleKind::PackedTernaryLinear;
  r.name = name;
  r.in_features = layer.options.in_features();
  r.out_features = layer.options.out_features();
  r.activation_bits = layer.options.activation_bits();
  const std::string what = "bittorch::save_packed: layer '" + name + "'";
  ops::check_finite(what.c_str(), "scale", layer.scale);
  if (layer.bias.defined()) ops::check_finite(what.c_str(), "bias", layer.bias);
  codes = quant::trits_from_packed(layer.packed, r.in_features);
  r.trits = std::string_view(reinterpret_cast<const char*>(codes.data()), codes.size());
  const at::Tensor scale = layer.scale.cpu().contiguous();
  r.scale.assign(scale.data_ptr<float>(), scale.data_ptr<float>() + scale.numel());
  if (layer.bias.defined()) {
    const at::Tensor bias = layer.bias.cpu().to(at::kFloat).contiguous();
    r.bias.assign(bias.data_ptr<float>(), bias.data_ptr<float>() + bias.numel());
  }
  return r;
}

nn::PackedTernaryLinear layer_of(const io::PackedModuleRecord& r) {
  nn::PackedTernaryLinear layer(nn::PackedTernaryLinearOptions(r.in_features, r.out_features)
                                    .bias(!r.bias.empty())
                                    .activation_bits(r.activation_bits));
  torch::NoGradGuard no_grad;
  quant::packed_from_trits(reinterpret_cast<const uint8_t*>(r.trits.data()), static_cast<int64_t>(r.trits.size()),
                           r.in_features, layer->packed);
  layer->scale.copy_(at::from_blob(const_cast<float*>(r.scale.data()), {r.out_features}, at::kFloat));
  if (!r.bias.empty()) layer->bias.copy_(at::from_blob(const_cast<float*>(r.bias.data()), {r.out_features}, at::kFloat));
  return layer;
}

}  // namespace

void save_packed(const torch::nn::Sequential& model, const std::string& path) {
  std::vector<io::PackedModuleRecord> records;
  const auto children = model->named_children();
  std::vector<std::vector<uint8_t>> codes(children.size());
  for (size_t i = 0; i < children.size(); ++i) {
    const auto& item = children[i];
    const auto& module = item.value();
    if (const auto* packed = module->as<nn::PackedTernaryLinearImpl>()) {
      records.push_back(record_of(item.key(), *packed, codes[i]));
    } else if (const auto* ternary = module->as<nn::TernaryLinearImpl>()) {
      records.push_back(record_of(item.key(), *nn::pack_layer(*ternary, item.key(), "bittorch::save_packed"), codes[i]));
    } else if (module->as<torch::nn::ReLUImpl>() != nullptr) {
      io::PackedModuleRecord relu;
      relu.name = item.key();
      records.push_back(std::move(relu));
    } else {
      TORCH_CHECK(false, "bittorch::save_packed: cannot save module '", item.key(), "' (", module->name(),
                  "): packed files hold PackedTernaryLinear, TernaryLinear and ReLU modules");
    }
  }
  io::write_file_atomically(path, io::write_packed_file(records));
}

torch::nn::Sequential load_packed(const std::string& path) {
  // The records' codes are views into the file's bytes: the file, 1.6 bits per weight, and
  // the layers' 2-bit matrices are all this takes.
  std::string bytes;
  std::vector<io::PackedModuleRecord> records;
  try {
    bytes = io::read_regular_file(path);
    records = io::parse_packed_file(bytes);
  } catch (const io::PackedFileError& error) {
    TORCH_CHECK(false, "bittorch::load_packed: '", path, "': ", error.what());
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "bittorch::load_packed: ", error.what_without_backtrace());
  }
  torch::nn::Sequential model;
  for (const auto& r : records) {
    if (r.kind == io::ModuleKind::ReLU) {
      model->push_back(std::string(r.name), torch::nn::ReLU().ptr());
      continue;
    }
    try {
      model->push_back(std::string(r.name), layer_of(r).ptr());
    } catch (const c10::Error& error) {
      TORCH_CHECK(false, "bittorch::load_packed: '", path, "': module '", r.name, "': ", error.what_without_backtrace());
    }
  }
  return model;
}

}  // namespace bittorch
