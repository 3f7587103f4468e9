#pragma once

// Training checkpoints that cannot silently lie. A file holds, in this order: the magic
// "BTCKPT\r\n", a format version (uint32), a JSON metadata block (uint64 length, then the text),
// the tensors as a LibTorch archive (uint64 length, then the bytes: the model under "model", the
// optimizer's state under "optimizer") and a CRC-32 of everything before it. The metadata
// records the model (its kind and every layer's type, shape and quantization settings), the
// run's settings, its progress (epochs done, optimizer steps, so the LR schedule's position)
// and the metrics so far. Loading checks all of it.

#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace bittorch::apps {

inline constexpr uint32_t kCheckpointVersion = 1;

/// What a checkpoint records besides the tensors.
struct CheckpointMetadata {
  /// {"kind": "fp32" | "ternary", "layers": describe_layers(model)}.
  nlohmann::json model;
  /// The settings a run must share to resume this one (data, batches, learning rate, seed...).
  nlohmann::json settings = nlohmann::json::object();
  int64_t epochs_done = 0;
  /// Optimizer steps taken: the LR schedule's position.
  int64_t steps_done = 0;
  /// The per-epoch metrics so far, so that a resumed run reports the whole run.
  nlohmann::json metrics = nlohmann::json::array();
};

/// The metadata's "model" entry for `model` of `kind`.
nlohmann::json model_description(const torch::nn::Sequential& model, const std::string& kind);

/// Writes the checkpoint (atomically: bittorch::io::write_file_atomically). `optimizer` may be
/// null (no optimizer state is stored then).
void save_checkpoint(const std::string& path, const torch::nn::Sequential& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointMetadata& metadata);

/// Reads the checkpoint at `path` into `model` (and `optimizer`, unless null) after checking
/// the magic, the version, the checksum and that the stored model description equals
/// model_description(model, kind), all before any tensor is loaded. Any failure is a c10::Error
/// that names the file and, for a mismatch, the field with both values. Returns the metadata.
/// The tensors are loaded onto `device`, where `model` (and the optimizer's parameters) are.
CheckpointMetadata load_checkpoint(const std::string& path, torch::nn::Sequential& model,
                                   torch::optim::Optimizer* optimizer, const std::string& kind, torch::Device device);

/// A c10::Error naming the checkpoint `path` and the first field in which `stored` and
/// `expected` differ (a path such as settings.batch_size, with both values), if any.
void check_same_fields(const std::string& path, const std::string& prefix, const nlohmann::json& stored,
                       const nlohmann::json& expected);

}  // namespace bittorch::apps
