#pragma once

// Training checkpoints that cannot silently lie. A file holds, in this order: the magic
// "BTCKPT\r\n", a format version (uint32), a JSON metadata block (uint64 length, then the text),
// the tensors as a LibTorch archive (uint64 length, then the bytes: the model under "model", the
// optimizer's state under "optimizer") and a CRC-32 of everything before it. The metadata
// records the model (its kind and every layer's type, shape and quantization settings), the
// run's settings, its progress (epochs done, optimizer steps, so the LR schedule's position)
// and the metrics so far. Loading checks all of it before a tensor is read.

#include <bittorch/train/export.h>

#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace bittorch::train {

inline constexpr uint32_t kCheckpointVersion = 1;

/// What a checkpoint records besides the tensors.
struct CheckpointMetadata {
  /// describe_model(model, kind).
  nlohmann::json model;
  /// The settings a run must share to resume this one (data, batches, learning rate, seed...).
  nlohmann::json settings = nlohmann::json::object();
  int64_t epochs_done = 0;
  /// Optimizer steps taken: the LR schedule's position.
  int64_t steps_done = 0;
  /// The per-epoch records so far, so that a resumed run reports the whole run.
  nlohmann::json metrics = nlohmann::json::array();
};

/// Every layer of `model` with what fixes its tensors and its arithmetic: each module that
/// holds parameters or buffers of its own, or has no children (an activation), in tree order,
/// named by its path ("0", "blocks.1.attention.q"): its type, for Linear and TernaryLinear the
/// shape, bias and quantization settings, for other modules the shapes of their tensors.
BITTORCH_TRAIN_API nlohmann::json describe_layers(const torch::nn::Module& model);

/// {"kind": kind, "layers": describe_layers(model)}: a checkpoint's "model" entry.
BITTORCH_TRAIN_API nlohmann::json describe_model(const torch::nn::Module& model, const std::string& kind);

/// Writes the checkpoint (atomically: bittorch::io::write_file_atomically). `optimizer` may be
/// null (no optimizer state is stored then).
BITTORCH_TRAIN_API void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                                        const torch::optim::Optimizer* optimizer, const CheckpointMetadata& metadata);

/// Reads the checkpoint at `path` into `model` (and `optimizer`, unless null) after checking
/// the magic, the version, the checksum, that the stored model description equals
/// `expected_model` (describe_model of the model the caller built) and, unless
/// `expected_settings` is null, that the stored settings equal it, all before any tensor is
/// loaded. Any failure is a c10::Error that names the file and, for a mismatch, the field with
/// both values. The tensors are loaded onto `device`, where `model` (and the optimizer's
/// parameters) are. Returns the metadata.
BITTORCH_TRAIN_API CheckpointMetadata load_checkpoint(const std::string& path, torch::nn::Module& model,
                                                      torch::optim::Optimizer* optimizer,
                                                      const nlohmann::json& expected_model, c10::Device device,
                                                      const nlohmann::json* expected_settings = nullptr);

/// The metadata of the checkpoint at `path` (magic, version and checksum checked), without
/// loading a tensor: what a program reads to build the model a checkpoint holds.
BITTORCH_TRAIN_API CheckpointMetadata read_checkpoint_metadata(const std::string& path);

/// A c10::Error naming the checkpoint `path` and the first field in which `stored` and
/// `expected` differ (a path such as settings.batch_size, with both values), if any.
BITTORCH_TRAIN_API void check_same_fields(const std::string& path, const std::string& prefix,
                                          const nlohmann::json& stored, const nlohmann::json& expected);

}  // namespace bittorch::train
