#include "io/module_codecs.h"

#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/transformer.h>
#include <bittorch/quant/packing.h>

#include <bittorch/quant/checks.h>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>

namespace bittorch::io {
namespace {

// ---- helpers shared by the codecs ---------------------------------------------------------

// `tensor` as bytes of the record's array dtype, kept in `storage`.
std::string_view float_bytes(const at::Tensor& tensor, const ModuleRecord& r, std::deque<std::string>& storage) {
  const at::Tensor values = tensor.detach().to(at::kCPU, scalar_type_of(r.array_dtype)).contiguous();
  storage.emplace_back(static_cast<const char*>(values.const_data_ptr()), values.numel() * values.element_size());
  return storage.back();
}

// Checks that the record has `ints` integers, `reals` reals and `blobs` byte arrays.
void expect_counts(const ModuleRecord& r, const char* kind, size_t ints, size_t reals, size_t blobs) {
  TORCH_CHECK(r.ints.size() == ints && r.reals.size() == reals && r.blobs.size() == blobs, kind, " record with ",
              r.ints.size(), " integers, ", r.reals.size(), " reals and ", r.blobs.size(), " arrays (expected ", ints,
              ", ", reals, " and ", blobs, ")");
}

void expect_features(int64_t value, const char* what) {
  TORCH_CHECK(value >= 1 && value <= (int64_t{1} << 24), "invalid ", what, " ", value);
}

// Array `index` of the record (its size checked) as a CPU tensor of its array dtype and
// `dest`'s shape, viewing the file's bytes: valid while they are.
at::Tensor stored_floats(const ModuleRecord& r, size_t index, const at::Tensor& dest, const char* what) {
  const auto dtype = scalar_type_of(r.array_dtype);
  const auto bytes = static_cast<size_t>(dest.numel()) * c10::elementSize(dtype);
  TORCH_CHECK(r.blobs[index].size() == bytes, "its ", what, " has ", r.blobs[index].size(), " bytes, expected ", bytes);
  const auto options = at::TensorOptions().dtype(dtype);
  const char* data = r.blobs[index].data();
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(dtype) != 0) {
    // Arrays are not aligned in the file: an unaligned one is copied out first.
    auto aligned = at::empty(dest.sizes(), options);
    std::memcpy(aligned.data_ptr(), data, bytes);
    return aligned;
  }
  // from_blob needs a mutable pointer; the tensor is only read (copied from).
  return at::from_blob(const_cast<char*>(data), dest.sizes(), options);
}

// Array `index` of the record into `dest`, in dest's device and dtype, after checking its
// values finite (a c10::Error naming the first non-finite one, by row) and, with `positive`,
// above zero.
void copy_floats(const ModuleRecord& r, size_t index, const at::Tensor& dest, const char* what, bool positive = false) {
  const auto stored = stored_floats(r, index, dest, what);
  const auto rows = stored.reshape({stored.size(0), -1});
  const auto first_bad_row = [&](const at::Tensor& good) {
    return good.all(1).logical_not().nonzero()[0][0].item<int64_t>();
  };
  const auto finite = at::isfinite(rows);
  if (!finite.all().item<bool>()) {
    const int64_t row = first_bad_row(finite);
    TORCH_CHECK(false, "a non-finite ", what, " (row ", row, " holds ",
                rows[row].masked_select(finite[row].logical_not())[0].item<double>(), ")");
  }
  const auto above_zero = positive ? rows > 0 : at::Tensor();
  if (positive && !above_zero.all().item<bool>()) {
    const int64_t row = first_bad_row(above_zero);
    TORCH_CHECK(false, "a ", what, " that is not positive (", rows[row].min().item<double>(), " at row ", row,
                "): ternary scales are means or maxima of magnitudes");
  }
  torch::NoGradGuard no_grad;
  dest.copy_(stored);
}

template <typename Impl>
bool is(const torch::nn::Module& module) {
  return dynamic_cast<const Impl*>(&module) != nullptr;
}

template <typename Impl>
const Impl& as(const torch::nn::Module& module) {
  return dynamic_cast<const Impl&>(module);
}

void no_arrays(const torch::nn::Module&, const std::string&, ModuleRecord&, std::deque<std::string>&) {}
void no_numbers(const torch::nn::Module&, const std::string&, ModuleRecord&) {}

// ---- PackedTernaryLinear: ints in, out, bias, activation_bits[, per_channel, scale_mode];
// reals [threshold_factor]; arrays codes (1.6-bit), scale, [bias]. (Version 1 files have the
// first four ints and no reals: the rest of the config at its defaults.)

void describe_packed(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  const auto& o = as<nn::PackedTernaryLinearImpl>(module).options;
  r.ints = {o.in_features(), o.out_features(), o.bias()};
  quant::append_numbers(o.quant(), r.ints, r.reals);
}

void packed_arrays(const torch::nn::Module& module, const std::string& path, ModuleRecord& r,
                   std::deque<std::string>& storage) {
  const auto& layer = as<nn::PackedTernaryLinearImpl>(module);
  const std::string what = "bittorch::save_packed: layer '" + path + "'";
  quant::check_finite(what.c_str(), "scale", layer.scale);
  if (layer.bias.defined()) quant::check_finite(what.c_str(), "bias", layer.bias);
  const auto trits = quant::trits_from_packed(layer.packed, layer.options.in_features());
  storage.emplace_back(trits.begin(), trits.end());
  r.blobs.push_back(storage.back());
  r.blobs.push_back(float_bytes(layer.scale.expand({layer.options.out_features()}), r, storage));
  if (layer.bias.defined()) r.blobs.push_back(float_bytes(layer.bias, r, storage));
}

torch::nn::AnyModule make_packed(const ModuleRecord& r) {
  TORCH_CHECK(r.ints.size() == 4 || r.ints.size() == 6, "PackedTernaryLinear record with ", r.ints.size(),
              " integers; expected 4 or 6");
  const int64_t in = r.ints[0], out = r.ints[1];
  expect_features(in, "in_features");
  expect_features(out, "out_features");
  TORCH_CHECK(r.ints[2] == 0 || r.ints[2] == 1, "invalid bias flag ", r.ints[2]);
  const bool bias = r.ints[2] == 1;
  expect_counts(r, "PackedTernaryLinear", r.ints.size(), r.ints.size() == 6 ? 1 : 0, bias ? 3 : 2);
  // Version 1 records: activation_bits alone, the rest of the config at its defaults.
  const auto config = r.ints.size() == 6 ? quant::quant_config_from_numbers(r.ints, 3, r.reals, 0)
                                         : quant::QuantConfig().activation_bits(r.ints[3]);
  quant::check_quant_config(config, "PackedTernaryLinear record");
  return torch::nn::AnyModule(
      nn::PackedTernaryLinear(nn::PackedTernaryLinearOptions(in, out).bias(bias).quant(config)));
}

void load_packed(const ModuleRecord& r, torch::nn::Module& module) {
  auto& layer = dynamic_cast<nn::PackedTernaryLinearImpl&>(module);
  const auto* bytes = reinterpret_cast<const uint8_t*>(r.blobs[0].data());
  const auto size = static_cast<int64_t>(r.blobs[0].size());
  torch::NoGradGuard no_grad;
  if (layer.packed.is_cpu() && layer.packed.is_contiguous()) {
    quant::packed_from_trits(bytes, size, layer.options.in_features(), layer.packed);
  } else {
    auto packed = at::empty(layer.packed.sizes(), layer.packed.options().device(at::kCPU));
    quant::packed_from_trits(bytes, size, layer.options.in_features(), packed);
    layer.packed.copy_(packed);
  }
  copy_floats(r, 1, layer.scale, "scale", /*positive=*/true);
  if (layer.bias.defined()) copy_floats(r, 2, layer.bias, "bias");
}

// ---- Linear: ints in, out, bias; arrays weight, [bias] -------------------------------------

void describe_linear(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  const auto& o = as<torch::nn::LinearImpl>(module).options;
  r.ints = {o.in_features(), o.out_features(), o.bias()};
}

void linear_arrays(const torch::nn::Module& module, const std::string&, ModuleRecord& r,
                   std::deque<std::string>& storage) {
  const auto& layer = as<torch::nn::LinearImpl>(module);
  r.blobs.push_back(float_bytes(layer.weight, r, storage));
  if (layer.bias.defined()) r.blobs.push_back(float_bytes(layer.bias, r, storage));
}

torch::nn::AnyModule make_linear(const ModuleRecord& r) {
  TORCH_CHECK(r.ints.size() == 3, "Linear record with ", r.ints.size(), " integers; expected 3");
  expect_features(r.ints[0], "in_features");
  expect_features(r.ints[1], "out_features");
  const bool bias = r.ints[2] != 0;
  expect_counts(r, "Linear", 3, 0, bias ? 2 : 1);
  return torch::nn::AnyModule(torch::nn::Linear(torch::nn::LinearOptions(r.ints[0], r.ints[1]).bias(bias)));
}

void load_linear(const ModuleRecord& r, torch::nn::Module& module) {
  auto& layer = dynamic_cast<torch::nn::LinearImpl&>(module);
  copy_floats(r, 0, layer.weight, "weight");
  if (layer.bias.defined()) copy_floats(r, 1, layer.bias, "bias");
}

// ---- Embedding: ints num_embeddings, embedding_dim, padding_idx (-1: none); array weight ---

void describe_embedding(const torch::nn::Module& module, const std::string& path, ModuleRecord& r) {
  const auto& o = as<torch::nn::EmbeddingImpl>(module).options;
  TORCH_CHECK(!o.max_norm().has_value(), "bittorch::save_packed: embedding '", path,
              "' has max_norm, which renormalizes its weight in forward; packed files hold embeddings without it");
  r.ints = {o.num_embeddings(), o.embedding_dim(), o.padding_idx().value_or(-1)};
}

void embedding_arrays(const torch::nn::Module& module, const std::string&, ModuleRecord& r,
                      std::deque<std::string>& storage) {
  r.blobs.push_back(float_bytes(as<torch::nn::EmbeddingImpl>(module).weight, r, storage));
}

torch::nn::AnyModule make_embedding(const ModuleRecord& r) {
  expect_counts(r, "Embedding", 3, 0, 1);
  expect_features(r.ints[0], "num_embeddings");
  expect_features(r.ints[1], "embedding_dim");
  TORCH_CHECK(r.ints[2] >= -1 && r.ints[2] < r.ints[0], "invalid padding_idx ", r.ints[2]);
  auto options = torch::nn::EmbeddingOptions(r.ints[0], r.ints[1]);
  if (r.ints[2] >= 0) options.padding_idx(r.ints[2]);
  return torch::nn::AnyModule(torch::nn::Embedding(options));
}

void load_embedding(const ModuleRecord& r, torch::nn::Module& module) {
  copy_floats(r, 0, dynamic_cast<torch::nn::EmbeddingImpl&>(module).weight, "weight");
}

// ---- LayerNorm: ints elementwise_affine, normalized_shape...; reals eps; arrays [weight, bias]

void describe_layer_norm(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  const auto& o = as<torch::nn::LayerNormImpl>(module).options;
  r.ints = {o.elementwise_affine()};
  r.ints.insert(r.ints.end(), o.normalized_shape().begin(), o.normalized_shape().end());
  r.reals = {o.eps()};
}

void layer_norm_arrays(const torch::nn::Module& module, const std::string&, ModuleRecord& r,
                       std::deque<std::string>& storage) {
  const auto& layer = as<torch::nn::LayerNormImpl>(module);
  if (!layer.options.elementwise_affine()) return;
  r.blobs.push_back(float_bytes(layer.weight, r, storage));
  r.blobs.push_back(float_bytes(layer.bias, r, storage));
}

torch::nn::AnyModule make_layer_norm(const ModuleRecord& r) {
  TORCH_CHECK(r.ints.size() >= 2 && (r.ints[0] == 0 || r.ints[0] == 1), "LayerNorm record with invalid integers");
  const bool affine = r.ints[0] == 1;
  expect_counts(r, "LayerNorm", r.ints.size(), 1, affine ? 2 : 0);
  const std::vector<int64_t> shape(r.ints.begin() + 1, r.ints.end());
  for (const int64_t d : shape) expect_features(d, "normalized_shape entry");
  TORCH_CHECK(r.reals[0] > 0, "invalid eps ", r.reals[0]);
  return torch::nn::AnyModule(
      torch::nn::LayerNorm(torch::nn::LayerNormOptions(shape).eps(r.reals[0]).elementwise_affine(affine)));
}

void load_layer_norm(const ModuleRecord& r, torch::nn::Module& module) {
  auto& layer = dynamic_cast<torch::nn::LayerNormImpl&>(module);
  if (!layer.options.elementwise_affine()) return;
  copy_floats(r, 0, layer.weight, "weight");
  copy_floats(r, 1, layer.bias, "bias");
}

// ---- RMSNorm: ints features; reals eps; array weight ----------------------------------------

void describe_rms_norm(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  const auto& o = as<nn::RMSNormImpl>(module).options;
  r.ints = {o.features()};
  r.reals = {o.eps()};
}

void rms_norm_arrays(const torch::nn::Module& module, const std::string&, ModuleRecord& r,
                     std::deque<std::string>& storage) {
  r.blobs.push_back(float_bytes(as<nn::RMSNormImpl>(module).weight, r, storage));
}

torch::nn::AnyModule make_rms_norm(const ModuleRecord& r) {
  expect_counts(r, "RMSNorm", 1, 1, 1);
  expect_features(r.ints[0], "features");
  TORCH_CHECK(r.reals[0] > 0, "invalid eps ", r.reals[0]);
  return torch::nn::AnyModule(nn::RMSNorm(nn::RMSNormOptions(r.ints[0]).eps(r.reals[0])));
}

void load_rms_norm(const ModuleRecord& r, torch::nn::Module& module) {
  copy_floats(r, 0, dynamic_cast<nn::RMSNormImpl&>(module).weight, "weight");
}

// ---- activations and dropout ---------------------------------------------------------------

void describe_gelu(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  r.ints = {as<torch::nn::GELUImpl>(module).options.approximate() == "tanh"};
}

torch::nn::AnyModule make_gelu(const ModuleRecord& r) {
  expect_counts(r, "GELU", 1, 0, 0);
  return torch::nn::AnyModule(torch::nn::GELU(torch::nn::GELUOptions().approximate(r.ints[0] != 0 ? "tanh" : "none")));
}

void describe_dropout(const torch::nn::Module& module, const std::string&, ModuleRecord& r) {
  r.reals = {as<torch::nn::DropoutImpl>(module).options.p()};
}

torch::nn::AnyModule make_dropout(const ModuleRecord& r) {
  expect_counts(r, "Dropout", 0, 1, 0);
  TORCH_CHECK(r.reals[0] >= 0 && r.reals[0] <= 1, "invalid p ", r.reals[0]);
  return torch::nn::AnyModule(torch::nn::Dropout(r.reals[0]));
}

// A module without options or tensors (an activation).
template <typename Holder>
torch::nn::AnyModule make_stateless(const ModuleRecord& r) {
  expect_counts(r, codec_for(r.kind)->name, 0, 0, 0);
  return torch::nn::AnyModule(Holder());
}

void load_nothing(const ModuleRecord&, torch::nn::Module&) {}

const std::vector<ModuleCodec>& codecs() {
  static const std::vector<ModuleCodec> table = {
      {ModuleKind::PackedTernaryLinear, "PackedTernaryLinear", is<nn::PackedTernaryLinearImpl>, describe_packed,
       packed_arrays, make_packed, load_packed},
      {ModuleKind::Linear, "Linear", is<torch::nn::LinearImpl>, describe_linear, linear_arrays, make_linear,
       load_linear},
      {ModuleKind::Embedding, "Embedding", is<torch::nn::EmbeddingImpl>, describe_embedding, embedding_arrays,
       make_embedding, load_embedding},
      {ModuleKind::LayerNorm, "LayerNorm", is<torch::nn::LayerNormImpl>, describe_layer_norm, layer_norm_arrays,
       make_layer_norm, load_layer_norm},
      {ModuleKind::RMSNorm, "RMSNorm", is<nn::RMSNormImpl>, describe_rms_norm, rms_norm_arrays, make_rms_norm,
       load_rms_norm},
      {ModuleKind::GELU, "GELU", is<torch::nn::GELUImpl>, describe_gelu, no_arrays, make_gelu, load_nothing},
      {ModuleKind::Dropout, "Dropout", is<torch::nn::DropoutImpl>, describe_dropout, no_arrays, make_dropout,
       load_nothing},
      {ModuleKind::ReLU, "ReLU", is<torch::nn::ReLUImpl>, no_numbers, no_arrays, make_stateless<torch::nn::ReLU>,
       load_nothing},
      {ModuleKind::SiLU, "SiLU", is<torch::nn::SiLUImpl>, no_numbers, no_arrays, make_stateless<torch::nn::SiLU>,
       load_nothing},
      {ModuleKind::Tanh, "Tanh", is<torch::nn::TanhImpl>, no_numbers, no_arrays, make_stateless<torch::nn::Tanh>,
       load_nothing},
      {ModuleKind::Sigmoid, "Sigmoid", is<torch::nn::SigmoidImpl>, no_numbers, no_arrays,
       make_stateless<torch::nn::Sigmoid>, load_nothing},
  };
  return table;
}

}  // namespace

const ModuleCodec* codec_for(const torch::nn::Module& module) {
  for (const auto& codec : codecs()) {
    if (codec.matches(module)) return &codec;
  }
  return nullptr;
}

const ModuleCodec* codec_for(ModuleKind kind) {
  for (const auto& codec : codecs()) {
    if (codec.kind == kind) return &codec;
  }
  return nullptr;
}

at::ScalarType scalar_type_of(ArrayDtype dtype) {
  switch (dtype) {
    case ArrayDtype::Float16:
      return at::kHalf;
    case ArrayDtype::BFloat16:
      return at::kBFloat16;
    case ArrayDtype::Float32:
      break;
  }
  return at::kFloat;
}

torch::nn::AnyModule create(const ModuleRecord& record) {
  const auto* codec = codec_for(record.kind);
  TORCH_INTERNAL_ASSERT(codec != nullptr);
  auto module = codec->make(record);
  codec->load(record, *module.ptr());
  return module;
}

bool same_numbers(const ModuleRecord& model, const ModuleRecord& file) {
  if (model.kind != file.kind) return false;
  if (file.kind == ModuleKind::PackedTernaryLinear && file.ints.size() == 4) {
    return std::equal(file.ints.begin(), file.ints.end(), model.ints.begin());
  }
  return model.ints == file.ints && model.reals == file.reals;
}

std::string stored_kind_names() {
  std::string names;
  for (const auto& codec : codecs()) names += std::string(names.empty() ? "" : ", ") + codec.name;
  return names + ", TernaryLinear (packed on the way), and Sequential or modules of your own holding them";
}

}  // namespace bittorch::io
