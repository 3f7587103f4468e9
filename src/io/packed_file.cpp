// bittorch::save_packed / load_packed: packed models as files (docs/packed-format.md).

#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/quant/packing.h>

#include "io/packed_file_format.h"

#include <torch/nn/modules/activation.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

namespace bittorch {
namespace {

io::PackedModuleRecord record_of(const std::string& name, const nn::PackedTernaryLinearImpl& layer) {
  io::PackedModuleRecord r;
  r.kind = io::ModuleKind::PackedTernaryLinear;
  r.name = name;
  r.in_features = layer.options.in_features();
  r.out_features = layer.options.out_features();
  r.activation_bits = layer.options.activation_bits();
  const at::Tensor trits =
      quant::pack_trits(quant::unpack_ternary(layer.packed.cpu(), r.in_features)).contiguous();
  r.trits.assign(trits.data_ptr<uint8_t>(), trits.data_ptr<uint8_t>() + trits.numel());
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
  const auto trits = at::from_blob(const_cast<uint8_t*>(r.trits.data()), {static_cast<int64_t>(r.trits.size())}, at::kByte);
  const at::Tensor codes = quant::unpack_trits(trits, r.in_features * r.out_features).view({r.out_features, r.in_features});
  layer->packed.copy_(quant::pack_ternary(codes));
  layer->scale.copy_(at::from_blob(const_cast<float*>(r.scale.data()), {r.out_features}, at::kFloat));
  if (!r.bias.empty()) layer->bias.copy_(at::from_blob(const_cast<float*>(r.bias.data()), {r.out_features}, at::kFloat));
  return layer;
}

}  // namespace

void save_packed(const torch::nn::Sequential& model, const std::string& path) {
  std::vector<io::PackedModuleRecord> records;
  const auto children = model->named_children();
  for (const auto& item : children) {
    const auto& module = item.value();
    if (const auto* packed = module->as<nn::PackedTernaryLinearImpl>()) {
      records.push_back(record_of(item.key(), *packed));
    } else if (const auto* ternary = module->as<nn::TernaryLinearImpl>()) {
      records.push_back(record_of(item.key(), *nn::PackedTernaryLinear(*ternary)));
    } else if (module->as<torch::nn::ReLUImpl>() != nullptr) {
      io::PackedModuleRecord relu;
      relu.name = item.key();
      records.push_back(std::move(relu));
    } else {
      TORCH_CHECK(false, "bittorch::save_packed: cannot save module '", item.key(), "' (", module->name(),
                  "): packed files hold PackedTernaryLinear, TernaryLinear and ReLU modules");
    }
  }
  const std::string bytes = io::write_packed_file(records);
  // Through a temporary file and a rename: an interrupted save never leaves half a model.
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out, "bittorch::save_packed: cannot open '", temporary, "' for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    TORCH_CHECK(out, "bittorch::save_packed: writing '", temporary, "' failed");
  }
  TORCH_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, "bittorch::save_packed: cannot rename '",
              temporary, "' to '", path, "'");
}

torch::nn::Sequential load_packed(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "bittorch::load_packed: cannot open '", path, "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TORCH_CHECK(!in.bad(), "bittorch::load_packed: reading '", path, "' failed");
  std::vector<io::PackedModuleRecord> records;
  try {
    records = io::parse_packed_file(bytes);
  } catch (const io::PackedFileError& error) {
    TORCH_CHECK(false, "bittorch::load_packed: '", path, "': ", error.what());
  }
  torch::nn::Sequential model;
  for (const auto& r : records) {
    if (r.kind == io::ModuleKind::ReLU) {
      model->push_back(std::string(r.name), torch::nn::ReLU().ptr());
    } else {
      model->push_back(std::string(r.name), layer_of(r).ptr());
    }
  }
  return model;
}

}  // namespace bittorch
