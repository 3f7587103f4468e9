// Checkpoint files (the layout is in the header) and the model descriptions they carry.

#include <bittorch/train/checkpoint.h>

#include <bittorch/io/files.h>
#include <bittorch/nn/modules/ternary_linear.h>

#include <torch/nn/modules/linear.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string_view>
#include <vector>

namespace bittorch::train {
namespace {

constexpr char kMagic[8] = {'B', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};

template <typename T>
void append(std::string& out, T value) {
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.append(raw, sizeof(T));
}

// Reads the sections of a checkpoint's bytes, naming the file in every error.
class SectionReader {
 public:
  SectionReader(const std::string& path, std::string_view bytes) : path_(path), bytes_(bytes) {}

  template <typename T>
  T get(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what).data(), sizeof(T));
    return value;
  }
  std::string_view take(uint64_t size, const char* what) {
    TORCH_CHECK(size <= bytes_.size() - offset_, "checkpoint '", path_, "' is truncated: its ", what,
                " runs past the end of the file (", bytes_.size(), " bytes)");
    const std::string_view data = bytes_.substr(offset_, size);
    offset_ += size;
    return data;
  }
  size_t offset() const { return offset_; }

 private:
  const std::string& path_;
  std::string_view bytes_;
  size_t offset_ = 0;
};

nlohmann::json metadata_json(const CheckpointMetadata& m) {
  return {{"model", m.model},
          {"settings", m.settings},
          {"epochs_done", m.epochs_done},
          {"steps_done", m.steps_done},
          {"metrics", m.metrics}};
}

// The field `key` of the stored metadata, if `valid` says it has the right type.
template <typename Valid>
nlohmann::json field(const std::string& path, const nlohmann::json& metadata, const char* key, Valid valid) {
  TORCH_CHECK(metadata.contains(key) && valid(metadata.at(key)), "checkpoint '", path, "' has no valid field '", key,
              "' in its metadata");
  return metadata.at(key);
}

// "torch::nn::ReLUImpl" -> "ReLU", "bittorch::nn::TernaryLinearImpl" -> "TernaryLinear".
std::string short_type_name(const torch::nn::Module& module) {
  std::string type = module.name();
  type = type.substr(type.rfind(':') + 1);
  if (type.size() > 4 && type.compare(type.size() - 4, 4, "Impl") == 0) type.resize(type.size() - 4);
  return type;
}

nlohmann::json describe_layer(const torch::nn::Module& module) {
  nlohmann::json layer = {{"type", short_type_name(module)}};
  if (const auto* ternary = module.as<nn::TernaryLinear>()) {
    const auto& o = ternary->options;
    layer.update({{"in_features", o.in_features()},
                  {"out_features", o.out_features()},
                  {"bias", o.bias()},
                  {"quantize", o.quantize()},
                  {"scale_mode", quant::to_string(o.quant().scale_mode())},
                  {"threshold_factor", o.quant().threshold_factor()},
                  {"per_channel", o.quant().per_channel()},
                  {"activation_bits", o.quant().activation_bits()}});
    // Recorded when set, so that checkpoints from before the setting existed still match.
    if (o.quant().gradient_bits() != 0) layer["gradient_bits"] = o.quant().gradient_bits();
  } else if (const auto* linear = module.as<torch::nn::Linear>()) {
    const auto& o = linear->options;
    layer.update({{"in_features", o.in_features()}, {"out_features", o.out_features()}, {"bias", o.bias()}});
  } else {
    nlohmann::json shapes = nlohmann::json::object();
    for (const auto& tensor : module.named_parameters(/*recurse=*/false)) shapes[tensor.key()] = tensor->sizes().vec();
    for (const auto& tensor : module.named_buffers(/*recurse=*/false)) shapes[tensor.key()] = tensor->sizes().vec();
    if (!shapes.empty()) layer["shapes"] = std::move(shapes);
  }
  return layer;
}

// The metadata of a checkpoint's `bytes` (all of it checked) and, in `archive_bytes`, the view
// of its tensor archive.
CheckpointMetadata parse_checkpoint(const std::string& path, const std::string& bytes,
                                    std::string_view& archive_bytes) {
  SectionReader reader(path, bytes);
  TORCH_CHECK(bytes.size() >= sizeof(kMagic) && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0, "checkpoint '",
              path,
              "' is not a BitTorch checkpoint (no BTCKPT magic; checkpoints of "
              "BitTorch 0.2.0 and earlier cannot be read)");
  reader.take(sizeof(kMagic), "magic");
  const auto version = reader.get<uint32_t>("format version");
  TORCH_CHECK(version == kCheckpointVersion, "checkpoint '", path, "' has format version ", version,
              ", which this build does not read (it reads ", kCheckpointVersion, ")");
  const std::string_view json = reader.take(reader.get<uint64_t>("metadata length"), "metadata");
  archive_bytes = reader.take(reader.get<uint64_t>("tensor archive length"), "tensor archive");
  const size_t body = reader.offset();
  const auto stored_crc = reader.get<uint32_t>("checksum");
  TORCH_CHECK(reader.offset() == bytes.size(), "checkpoint '", path, "' has ", bytes.size() - reader.offset(),
              " unexpected bytes after its checksum");
  TORCH_CHECK(io::crc32(std::string_view(bytes).substr(0, body)) == stored_crc, "checkpoint '", path,
              "' is corrupted: its checksum does not match its contents");

  nlohmann::json metadata;
  try {
    metadata = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& error) {
    TORCH_CHECK(false, "checkpoint '", path, "' has unreadable metadata: ", error.what());
  }
  TORCH_CHECK(metadata.is_object(), "checkpoint '", path, "' has unreadable metadata");
  CheckpointMetadata m;
  const auto is_object = [](const nlohmann::json& j) { return j.is_object(); };
  const auto is_count = [](const nlohmann::json& j) { return j.is_number_integer() && j.get<int64_t>() >= 0; };
  m.model = field(path, metadata, "model", is_object);
  m.settings = field(path, metadata, "settings", is_object);
  m.epochs_done = field(path, metadata, "epochs_done", is_count).get<int64_t>();
  m.steps_done = field(path, metadata, "steps_done", is_count).get<int64_t>();
  m.metrics = field(path, metadata, "metrics", [](const nlohmann::json& j) { return j.is_array(); });
  return m;
}

}  // namespace

nlohmann::json describe_layers(const torch::nn::Module& model) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& item : model.named_modules()) {
    const auto& module = *item.value();
    const bool container = !module.children().empty() && module.named_parameters(false).is_empty() &&
                           module.named_buffers(false).is_empty();
    if (container) continue;
    nlohmann::json layer = {{"name", item.key()}};
    layer.update(describe_layer(module));
    layers.push_back(std::move(layer));
  }
  return layers;
}

nlohmann::json describe_model(const torch::nn::Module& model, const std::string& kind) {
  return {{"kind", kind}, {"layers", describe_layers(model)}};
}

// A JSON value for a message: whole when short, else its start and its size.
std::string shown_value(const nlohmann::json& value) {
  const std::string text = value.dump();
  if (text.size() <= 80) return text;
  return text.substr(0, 60) + "... (" + std::to_string(text.size()) + " characters)";
}

// Every difference between the stored and this run's fields, one line each, by path.
void collect_differences(const std::string& prefix, const nlohmann::json& stored, const nlohmann::json& expected,
                         std::vector<std::string>& differences) {
  if (stored.is_object() && expected.is_object()) {
    for (const auto& [key, value] : expected.items()) {
      if (!stored.contains(key)) {
        differences.push_back(prefix + "." + key + " is missing; this run has " + shown_value(value));
      } else {
        collect_differences(prefix + "." + key, stored.at(key), value, differences);
      }
    }
    for (const auto& [key, value] : stored.items()) {
      if (!expected.contains(key)) {
        differences.push_back(prefix + "." + key + " is " + shown_value(value) + ", which this run does not have");
      }
    }
    return;
  }
  if (stored.is_array() && expected.is_array()) {
    if (stored.size() != expected.size()) {
      differences.push_back(prefix + " has " + std::to_string(stored.size()) + " entries in the checkpoint, but " +
                            std::to_string(expected.size()) + " in this run");
    }
    for (size_t i = 0; i < std::min(stored.size(), expected.size()); ++i) {
      collect_differences(prefix + "[" + std::to_string(i) + "]", stored[i], expected[i], differences);
    }
    return;
  }
  if (stored != expected) {
    differences.push_back(prefix + " is " + shown_value(stored) + " in the checkpoint, but " + shown_value(expected) +
                          " in this run");
  }
}

void check_same_fields(const std::string& path, const std::string& prefix, const nlohmann::json& stored,
                       const nlohmann::json& expected) {
  std::vector<std::string> differences;
  collect_differences(prefix, stored, expected, differences);
  if (differences.empty()) return;
  constexpr size_t kShown = 12;
  std::string lines;
  for (size_t i = 0; i < std::min(differences.size(), kShown); ++i) lines += "\n  field " + differences[i];
  if (differences.size() > kShown) lines += "\n  and " + std::to_string(differences.size() - kShown) + " more";
  TORCH_CHECK(false, "checkpoint '", path, "' differs from this run in ", differences.size(), " field",
              differences.size() == 1 ? "" : "s", ":", lines);
}

CheckpointMetadata read_checkpoint_metadata(const std::string& path) {
  const std::string bytes = io::read_regular_file(path);
  std::string_view archive_bytes;
  return parse_checkpoint(path, bytes, archive_bytes);
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer* optimizer,
                     const CheckpointMetadata& metadata) {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  std::ostringstream tensors;
  archive.save_to(tensors);
  const std::string json = metadata_json(metadata).dump();
  const std::string archive_bytes = tensors.str();
  std::string bytes(kMagic, sizeof(kMagic));
  append<uint32_t>(bytes, kCheckpointVersion);
  append<uint64_t>(bytes, json.size());
  bytes += json;
  append<uint64_t>(bytes, archive_bytes.size());
  bytes += archive_bytes;
  append<uint32_t>(bytes, io::crc32(bytes));
  io::write_file_atomically(path, bytes);
}

CheckpointMetadata load_checkpoint(const std::string& path, torch::nn::Module& model,
                                   torch::optim::Optimizer* optimizer, const nlohmann::json& expected_model,
                                   c10::Device device, const nlohmann::json* expected_settings) {
  const std::string bytes = io::read_regular_file(path);
  std::string_view archive_bytes;
  const CheckpointMetadata m = parse_checkpoint(path, bytes, archive_bytes);
  check_same_fields(path, "model", m.model, expected_model);
  if (expected_settings != nullptr) check_same_fields(path, "settings", m.settings, *expected_settings);

  torch::serialize::InputArchive archive, model_archive, optimizer_archive;
  try {
    archive.load_from(archive_bytes.data(), archive_bytes.size(), device);
    archive.read("model", model_archive);
    model.load(model_archive);
    if (optimizer != nullptr) {
      TORCH_CHECK(archive.try_read("optimizer", optimizer_archive), "it holds no optimizer state");
      optimizer->load(optimizer_archive);
    }
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "checkpoint '", path,
                "': its tensors do not match its metadata: ", error.what_without_backtrace());
  }
  return m;
}

}  // namespace bittorch::train
