#pragma once

// A decoder-only transformer language model in the BitNet b1.58 style: token embedding, blocks
// of RMSNorm -> causal self-attention with rotary embeddings (q, k, v, o projections) ->
// RMSNorm -> MLP, each with a residual, then RMSNorm and the output head; no biases. Its
// projections are torch::nn::Linear; nn::convert_to_ternary makes them TernaryLinear (every
// part implements ReplaceableChildren) and nn::pack packs them, so one definition serves the
// full-precision baseline, the ternary model and the packed one. A ProjectionFactory builds
// the model with other projections from the start (io::load_packed_transformer: packed ones).

#include <bittorch/nn/module_tree.h>
#include <bittorch/nn/options/transformer.h>
#include <bittorch/nn/packed_numbers.h>

#include <ATen/core/Tensor.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace bittorch::nn {

class BITTORCH_API RMSNormImpl : public torch::nn::Cloneable<RMSNormImpl> {
 public:
  explicit RMSNormImpl(RMSNormOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);

  RMSNormOptions options;
  at::Tensor weight;  ///< [features], initialised to ones
};
TORCH_MODULE(RMSNorm);

/// Keys and values of the positions seen so far, for generation one token at a time: per
/// layer [batch, heads, context, head_size], filled up to `length`.
struct KVCache {
  std::vector<at::Tensor> keys, values;
  int64_t length = 0;
};

/// A block part's input in a decode step as the pre-norm computes it: `norm` of input +
/// residual (ops::add_rms_norm: the residual add before the norm), or of input alone where
/// residual is undefined. The parts return the sum beside their output (the residual stream
/// goes on from it), so that a packed projection can take the add and the norm into its own
/// kernel (ops::add_rms_norm_packed_linear).
struct ResidualNorm {
  at::Tensor input, residual;
  RMSNormImpl* norm = nullptr;
};

/// (the norm's output, the sum it normed) of `in`, as ops::add_rms_norm computes them.
BITTORCH_API std::tuple<at::Tensor, at::Tensor> add_and_norm(const ResidualNorm& in);

/// Makes the bias-free projection at `path` (from the model's root: "blocks.0.attention.q";
/// from the part's own when the part is built alone: "q") of in_features -> out_features.
/// Without one, a part makes torch::nn::Linear projections.
using ProjectionFactory =
    std::function<torch::nn::AnyModule(const std::string& path, int64_t in_features, int64_t out_features)>;

/// Modules whose projections (torch::nn::Linear, then TernaryLinear or PackedTernaryLinear)
/// convert_to_ternary and pack swap in place.
class BITTORCH_API ProjectionHolder : public torch::nn::Module, public ReplaceableChildren {
 public:
  void replace_child(const std::string& name, const torch::nn::AnyModule& module) override;

  /// Joins each group of this module's projections that can be into one layer
  /// (nn::fuse_projections); returns how many groups are joined.
  int64_t fuse_projection_groups();

  /// Module::to, after which a joined layer whose members moved is dropped (with the old
  /// storage it held); the members compute alone until fuse_projections joins them again.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  /// Whether a group of projections (q, k and v; a gated MLP's gate and up) not joined by
  /// fuse_projections computes as one product of its members' stacked rows, training included
  /// (TernaryLinear alike or torch::nn::Linear alike); false: each member its own product, the
  /// reference the joined one is tested against.
  bool joined_products = true;

 protected:
  /// `make_projection` builds the projections, with `path_prefix` before their names.
  explicit ProjectionHolder(ProjectionFactory make_projection = {}, std::string path_prefix = "");
  /// Registers projection `name`; returns the index project() takes.
  size_t add_projection(const std::string& name, int64_t in, int64_t out);
  at::Tensor project(size_t index, const at::Tensor& x);
  /// ops::squared_relu(project(index, x)); a PackedTernaryLinear projection computes both in
  /// one kernel when `fused`.
  at::Tensor project_squared_relu(size_t index, const at::Tensor& x, bool fused);
  /// project(down, ops::squared_relu(project(up, x))) as one ops::squared_relu_mlp where the two
  /// projections are torch::nn::Linear without bias, or TernaryLinear alike
  /// (TernaryLinearImpl::forward_squared_relu_mlp); nullopt where they are not.
  std::optional<at::Tensor> project_squared_relu_mlp(size_t up, size_t down, const at::Tensor& x);
  /// Declares projections `members` (add_projection's indices) as reading one input; returns
  /// the index project_group takes.
  size_t add_projection_group(std::vector<size_t> members);
  /// Each member's projection of `x`, in order: slices of project_group_joined's output where
  /// there is one, else each projection's own output.
  std::vector<at::Tensor> project_group(size_t group, const at::Tensor& x);
  /// The members' projections of `x` side by side (in the last dimension): the joined layer's
  /// output when the group is joined and gradients are off, else one product of the members'
  /// stacked rows (joined_products); nullopt where the members compute alone.
  std::optional<at::Tensor> project_group_joined(size_t group, const at::Tensor& x);
  /// (project_group(group, the norm of `in`), the sum) from one
  /// PackedTernaryLinearImpl::forward_after_norm where the group is joined into a packed layer,
  /// gradients are off and in has a residual of the input's dtype; nullopt elsewhere.
  std::optional<std::pair<std::vector<at::Tensor>, at::Tensor>> project_group_after_norm(size_t group,
                                                                                         const ResidualNorm& in);
  /// (project_squared_relu(index, the norm of `in`, true), the sum) in one
  /// PackedTernaryLinearImpl::forward_after_norm where projection `index` is packed and in has
  /// a residual of the input's dtype; nullopt elsewhere.
  std::optional<std::tuple<at::Tensor, at::Tensor>> project_squared_relu_after_norm(size_t index,
                                                                                    const ResidualNorm& in);

 private:
  struct ProjectionGroup {
    std::vector<size_t> members;
    std::optional<torch::nn::AnyModule> joined;  // not registered: the members hold the state
  };
  std::vector<torch::nn::AnyModule> members_of(const ProjectionGroup& group) const;
  void drop_stale_joins();

  ProjectionFactory make_projection_;
  std::string path_prefix_;
  std::vector<std::pair<std::string, torch::nn::AnyModule>> projections_;
  std::vector<ProjectionGroup> groups_;
};

class BITTORCH_API CausalSelfAttentionImpl : public ProjectionHolder {
 public:
  explicit CausalSelfAttentionImpl(const TransformerOptions& options, const ProjectionFactory& make_projection = {},
                                   const std::string& path_prefix = "");
  /// x [batch, T, width] at positions start.. start + T - 1. With one layer's cached keys
  /// and values ([batch, heads, context, head_size] of a KVCache), this step's are written into
  /// them and attention covers every earlier position too.
  at::Tensor forward(const at::Tensor& x, int64_t start = 0, at::Tensor* cached_keys = nullptr,
                     at::Tensor* cached_values = nullptr);

  /// One new position per sequence (x [batch, 1, width]) at the device tensor `position`
  /// (int64 [1]), through ops::decode_attention (rotary embedding, cache write and attention
  /// in one op): every shape is fixed, so a CUDA graph can capture the step and replay it at
  /// any position. Inference only.
  at::Tensor forward_at(const at::Tensor& x, const at::Tensor& position, at::Tensor& cached_keys,
                        at::Tensor& cached_values);
  /// forward_at of the norm of `in`, and the sum it normed: with a packed q, k and v joined
  /// (nn::fuse_projections), the add and the norm run in their projection's kernel.
  std::tuple<at::Tensor, at::Tensor> forward_at(const ResidualNorm& in, const at::Tensor& position,
                                                at::Tensor& cached_keys, at::Tensor& cached_values);

  TransformerOptions options;
  /// With options.sub_norms: the RMSNorm of the attention's output before the o projection.
  RMSNorm sub_norm{nullptr};
  /// Whether q and k are rotated by one op (ops::rotary_embedding); false: the plain
  /// composition of nn::functional::apply_rotary, the reference the op is tested against.
  bool fused_rotary = true;

 private:
  // q [batch, heads, T, head_size], k and v [batch, kv_heads, T, head_size], q and k rotated
  // for positions start.. .
  std::tuple<at::Tensor, at::Tensor, at::Tensor> rotated_heads(const at::Tensor& x, int64_t start);
  at::Tensor merged_output(const at::Tensor& y);
  // forward_at after the q, k and v projections [batch, 1, width] each.
  at::Tensor attend_at(const std::vector<at::Tensor>& qkv, const at::Tensor& position, at::Tensor& cached_keys,
                       at::Tensor& cached_values);
  // The o projection of the heads' merged outputs [batch, T, width], after the sub-norm if any.
  at::Tensor output_projection(const at::Tensor& merged);

  size_t q_, k_, v_, o_, qkv_;
  // The rotary tables of every position (cos, signed sin) for inputs of `input_dtype`, made
  // once per device and dtype (float32, or float64 for float64 inputs).
  const std::pair<at::Tensor, at::Tensor>& rotary(c10::Device device, at::ScalarType input_dtype);
  std::vector<std::pair<at::Tensor, at::Tensor>> rotary_;
};
TORCH_MODULE(CausalSelfAttention);

class BITTORCH_API MlpImpl : public ProjectionHolder {
 public:
  explicit MlpImpl(const TransformerOptions& options, const ProjectionFactory& make_projection = {},
                   const std::string& path_prefix = "");
  at::Tensor forward(const at::Tensor& x);
  /// forward of the norm of `in`, and the sum it normed: with a packed up projection and the
  /// fused activation, the add and the norm run in the up projection's kernel.
  std::tuple<at::Tensor, at::Tensor> forward(const ResidualNorm& in);

  TransformerOptions options;
  /// With options.sub_norms: the RMSNorm of the hidden activations before the down projection.
  RMSNorm sub_norm{nullptr};
  /// Whether the squared ReLU is fused with the projections around it: one
  /// ops::squared_relu_mlp for the whole MLP (training included; on Hopper the activation runs
  /// in the products' epilogues), or a packed up projection's kernel; false: the op between the
  /// projections, the reference the fused path is tested against.
  bool fused_activation = true;

 private:
  size_t up_, down_, gate_ = 0, gate_up_ = 0;
};
TORCH_MODULE(Mlp);

class BITTORCH_API TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const TransformerOptions& options, const ProjectionFactory& make_projection = {},
                                const std::string& path_prefix = "");
  at::Tensor forward(const at::Tensor& x, int64_t start = 0, at::Tensor* cached_keys = nullptr,
                     at::Tensor* cached_values = nullptr);
  /// CausalSelfAttention::forward_at's step through the whole block.
  at::Tensor forward_at(const at::Tensor& x, const at::Tensor& position, at::Tensor& cached_keys,
                        at::Tensor& cached_values);

  RMSNorm attention_norm{nullptr}, mlp_norm{nullptr};
  CausalSelfAttention attention{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

class BITTORCH_API TransformerLMImpl : public torch::nn::Module, public PackedNumbers {
 public:
  explicit TransformerLMImpl(const TransformerOptions& options, const ProjectionFactory& make_projection = {});

  /// For packed files: append_numbers of the options and the projections' quantization
  /// (options/transformer.h).
  std::vector<int64_t> packed_ints() const override;
  std::vector<double> packed_reals() const override;

  /// tokens [batch, T] (int64, values below vocab_size) -> logits [batch, T, vocab_size]. With
  /// a cache, the tokens continue the cached sequence (T + cache->length <= context) and the
  /// cache grows by T; one token with gradients off takes decode_step (ops::decode_attention)
  /// where decode_step_supported(the tokens' device).
  at::Tensor forward(const at::Tensor& tokens, KVCache* cache = nullptr);

  /// The mean cross-entropy of predicting `targets` [batch, T] (int64, each below vocab_size
  /// or -100 to ignore) from `tokens` [batch, T]: cross_entropy(forward(tokens), targets), with
  /// the head and the loss fused (ops::linear_cross_entropy), so that float32 logits of the
  /// whole batch are never made; float32 (float64 for a float64 model).
  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& targets);

  /// The logits [batch, 1, vocab] of `tokens` [batch, 1] at the device tensor `position`
  /// (int64 [1] for every sequence, or [batch], each sequence's own), their keys and values
  /// written into `cache` there; `cache.length` is left alone. Fixed shapes and no host
  /// synchronisation: a CUDA graph can capture it, and a replay after position.add_(1)
  /// generates the next token (nn::Decoder does). Needs decode_step_supported(device).
  at::Tensor decode_step(const at::Tensor& tokens, const at::Tensor& position, KVCache& cache);

  /// Whether decode_step takes this model on `device`: ops::decode_attention_supports its head
  /// size and context there, and keys and values have as many heads as queries.
  bool decode_step_supported(c10::Device device) const;

  /// An empty cache for `batch` sequences, in `options`' device and dtype.
  KVCache make_cache(int64_t batch, const at::TensorOptions& options) const;

  /// Whether forward, loss and decode_step run the fused ops: each residual add with the norm
  /// after it (ops::add_rms_norm; in decode_step, with packed projections joined by
  /// nn::fuse_projections, inside the next projection's kernel), the attention's rotary embedding
  /// (ops::rotary_embedding; the decode step has its own in ops::decode_attention) and a packed up projection's squared
  /// ReLU (in its kernel), and q, k and v (a gated MLP's gate and up) as one product of their
  /// stacked rows (ProjectionHolder::joined_products). False runs the blocks' plain
  /// composition, the reference the fused path is tested against. Not part of the model: the
  /// same weights give the same outputs. On by default.
  void set_fused_ops(bool fused);
  bool fused_ops() const { return fused_ops_; }

  /// Whether forward and loss, with gradients on and no cache, keep only each block's inputs
  /// for the backward and recompute the block there (nn::checkpointed): activation memory of
  /// about one block instead of all, for a second forward of the blocks. The same gradients.
  /// Not part of the model. Off by default.
  void set_activation_checkpointing(bool checkpointing);
  bool activation_checkpointing() const { return activation_checkpointing_; }

  TransformerOptions options;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};  ///< of TransformerBlock
  RMSNorm norm{nullptr};
  /// The output projection; null with options.tied_embeddings (the embedding's weight serves).
  torch::nn::Linear head{nullptr};
  /// The weight [vocab_size, width] that turns features into logits: head's or, tied, the
  /// embedding's.
  const at::Tensor& head_weight() const;

 private:
  bool fused_ops_ = true;
  bool activation_checkpointing_ = false;
  // The final norm's output [batch, T, width] of `tokens` at positions start.., through the
  // cache if any (which it fills, leaving its length alone).
  at::Tensor final_features(const at::Tensor& tokens, int64_t start, KVCache* cache);
  // The blocks over the embedded tokens `x`, each residual add fused with the norm after it,
  // attend(i, normed) giving block i's attention output: the final norm's output.
  // With `checkpoint` each block is recomputed in the backward (attending without a cache).
  at::Tensor fused_blocks(at::Tensor x, const std::function<at::Tensor(size_t, const at::Tensor&)>& attend,
                          bool checkpoint);
};
TORCH_MODULE(TransformerLM);

/// The path filter of convert_to_ternary for a TransformerLM: every projection, not the head.
BITTORCH_API bool is_transformer_projection(const std::string& path, const torch::nn::LinearImpl& layer);

}  // namespace bittorch::nn
