#include <bittorch/nn/modules/transformer.h>

#include <bittorch/nn/activation_checkpoint.h>
#include <bittorch/nn/functional/transformer.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/ops/add_rms_norm.h>
#include <bittorch/ops/decode_attention.h>
#include <bittorch/ops/linear_cross_entropy.h>
#include <bittorch/ops/rotary_embedding.h>
#include <bittorch/ops/squared_relu.h>
#include <bittorch/ops/squared_relu_mlp.h>

#include "nn/joined_rows.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <cmath>
#include <functional>
#include <optional>
#include <tuple>

namespace bittorch::nn {

RMSNormImpl::RMSNormImpl(RMSNormOptions options_) : options(std::move(options_)) {
  reset();
}

void RMSNormImpl::reset() {
  TORCH_CHECK(options.features() >= 1 && options.eps() > 0, "RMSNorm: features must be >= 1 and eps > 0, not ",
              options.features(), " and ", options.eps());
  weight = register_parameter("weight", torch::ones({options.features()}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  return functional::rms_norm(x, weight, options.eps());
}

std::tuple<at::Tensor, at::Tensor> add_and_norm(const ResidualNorm& in) {
  if (!in.residual.defined()) return {in.norm->forward(in.input), in.input};
  return ops::add_rms_norm(in.input, in.residual, in.norm->weight, in.norm->options.eps());
}

namespace {

// The packed layer behind `module` where `in` can go through its forward_after_norm: gradients
// off, a residual of the input's dtype.
PackedTernaryLinearImpl* packed_after_norm(const torch::nn::AnyModule& module, const ResidualNorm& in) {
  if (!in.residual.defined() || in.residual.scalar_type() != in.input.scalar_type() || at::GradMode::is_enabled()) {
    return nullptr;
  }
  return dynamic_cast<PackedTernaryLinearImpl*>(module.ptr().get());
}

}  // namespace

void ProjectionHolder::replace_child(const std::string& name, const torch::nn::AnyModule& module) {
  for (auto& [child, holder] : projections_) {
    if (child != name) continue;
    replace_module(name, module.ptr());
    holder = module;
    for (auto& group : groups_) group.joined.reset();  // its members are no longer the joined layer's views
    return;
  }
  TORCH_CHECK(false, this->name(), ": no projection named '", name, "'");
}

ProjectionHolder::ProjectionHolder(ProjectionFactory make_projection, std::string path_prefix)
    : make_projection_(std::move(make_projection)), path_prefix_(std::move(path_prefix)) {}

size_t ProjectionHolder::add_projection(const std::string& name, int64_t in, int64_t out) {
  auto projection = make_projection_
                        ? make_projection_(path_prefix_ + name, in, out)
                        : torch::nn::AnyModule(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
  register_module(name, projection.ptr());
  projections_.emplace_back(name, std::move(projection));
  return projections_.size() - 1;
}

at::Tensor ProjectionHolder::project(size_t index, const at::Tensor& x) {
  return projections_[index].second.forward(x);
}

at::Tensor ProjectionHolder::project_squared_relu(size_t index, const at::Tensor& x, bool fused) {
  if (fused) {
    if (auto* packed = dynamic_cast<PackedTernaryLinearImpl*>(projections_[index].second.ptr().get())) {
      return packed->forward_squared_relu(x);
    }
  }
  return ops::squared_relu(project(index, x));
}

std::optional<at::Tensor> ProjectionHolder::project_squared_relu_mlp(size_t up, size_t down, const at::Tensor& x) {
  const auto& up_module = projections_[up].second.ptr();
  const auto& down_module = projections_[down].second.ptr();
  if (auto* up_linear = up_module->as<torch::nn::LinearImpl>()) {
    auto* down_linear = down_module->as<torch::nn::LinearImpl>();
    if (down_linear == nullptr || up_linear->options.bias() || down_linear->options.bias()) return std::nullopt;
    return ops::squared_relu_mlp(x, up_linear->weight, down_linear->weight);
  }
  auto* up_ternary = up_module->as<TernaryLinearImpl>();
  auto* down_ternary = down_module->as<TernaryLinearImpl>();
  if (up_ternary == nullptr || down_ternary == nullptr) return std::nullopt;
  return TernaryLinearImpl::forward_squared_relu_mlp(*up_ternary, *down_ternary, x);
}

size_t ProjectionHolder::add_projection_group(std::vector<size_t> members) {
  groups_.push_back({std::move(members), std::nullopt});
  return groups_.size() - 1;
}

std::vector<torch::nn::AnyModule> ProjectionHolder::members_of(const ProjectionGroup& group) const {
  std::vector<torch::nn::AnyModule> members;
  for (const size_t index : group.members) members.push_back(projections_[index].second);
  return members;
}

void ProjectionHolder::drop_stale_joins() {
  for (auto& group : groups_) {
    if (group.joined && !detail::still_joined(*group.joined, members_of(group))) group.joined.reset();
  }
}

void ProjectionHolder::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  drop_stale_joins();
}

void ProjectionHolder::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  drop_stale_joins();
}

void ProjectionHolder::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  drop_stale_joins();
}

int64_t ProjectionHolder::fuse_projection_groups() {
  int64_t joined = 0;
  for (auto& group : groups_) {
    const auto members = members_of(group);
    if (!group.joined || !detail::still_joined(*group.joined, members)) group.joined = detail::join_rows(members);
    joined += group.joined.has_value();
  }
  return joined;
}

std::optional<at::Tensor> ProjectionHolder::project_group_joined(size_t index, const at::Tensor& x) {
  auto& group = groups_[index];
  const auto members = members_of(group);
  if (group.joined && !at::GradMode::is_enabled()) {
    if (detail::still_joined(*group.joined, members)) return group.joined->forward(x);
    group.joined.reset();  // no longer the members' storage: they compute alone
  }
  if (joined_products) return detail::joined_output(members, x);
  return std::nullopt;
}

std::optional<std::pair<std::vector<at::Tensor>, at::Tensor>> ProjectionHolder::project_group_after_norm(
    size_t index, const ResidualNorm& in) {
  auto& group = groups_[index];
  const auto members = members_of(group);
  if (!group.joined || !detail::still_joined(*group.joined, members)) return std::nullopt;
  auto* packed = packed_after_norm(*group.joined, in);
  if (packed == nullptr) return std::nullopt;
  auto [joined, sum] = packed->forward_after_norm(in.input, in.residual, in.norm->weight, in.norm->options.eps());
  return std::make_pair(joined.split_with_sizes(detail::output_widths(members), -1), sum);
}

std::optional<std::tuple<at::Tensor, at::Tensor>> ProjectionHolder::project_squared_relu_after_norm(
    size_t index, const ResidualNorm& in) {
  auto* packed = packed_after_norm(projections_[index].second, in);
  if (packed == nullptr) return std::nullopt;
  return packed->forward_after_norm(in.input, in.residual, in.norm->weight, in.norm->options.eps(),
                                    /*squared_relu=*/true);
}

std::vector<at::Tensor> ProjectionHolder::project_group(size_t index, const at::Tensor& x) {
  if (auto joined = project_group_joined(index, x)) {
    return joined->split_with_sizes(detail::output_widths(members_of(groups_[index])), -1);
  }
  std::vector<at::Tensor> outputs;
  for (const size_t member : groups_[index].members) outputs.push_back(project(member, x));
  return outputs;
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const TransformerOptions& options_,
                                                 const ProjectionFactory& make_projection,
                                                 const std::string& path_prefix)
    : ProjectionHolder(make_projection, path_prefix), options(options_) {
  check_transformer_options(options);
  const int64_t width = options.width(), key_value_width = key_value_heads(options) * (width / options.heads());
  q_ = add_projection("q", width, width);
  k_ = add_projection("k", width, key_value_width);
  v_ = add_projection("v", width, key_value_width);
  o_ = add_projection("o", width, width);
  qkv_ = add_projection_group({q_, k_, v_});
  if (options.sub_norms()) {
    sub_norm = register_module("sub_norm", RMSNorm(RMSNormOptions(width).eps(options.norm_eps())));
  }
}

const std::pair<at::Tensor, at::Tensor>& CausalSelfAttentionImpl::rotary(c10::Device device,
                                                                         at::ScalarType input_dtype) {
  const auto dtype = input_dtype == at::kDouble ? at::kDouble : at::kFloat;
  for (const auto& tables : rotary_) {
    if (tables.first.device() == device && tables.first.scalar_type() == dtype) return tables;
  }
  const auto [cos, sin] =
      functional::rotary_tables(options.context(), options.width() / options.heads(), options.rope_base(), device);
  return rotary_.emplace_back(cos.to(dtype), sin.to(dtype));  // from float64
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> CausalSelfAttentionImpl::rotated_heads(const at::Tensor& x,
                                                                                      int64_t start) {
  const int64_t batch = x.size(0), steps = x.size(1), head_size = options.width() / options.heads();
  if (fused_rotary) {
    // One product's q, k and v side by side: the split op's backward hands that product its
    // gradient whole, where the slices' would be concatenated.
    if (const auto joined = project_group_joined(qkv_, x)) {
      const auto& [cos, sin] = rotary(joined->device(), joined->scalar_type());
      auto [q, k, v] = ops::rotary_embedding_split(*joined, options.heads(), cos.narrow(0, start, steps),
                                                   sin.narrow(0, start, steps));
      return {q, k, v};
    }
  }
  const auto split_heads = [&](const at::Tensor& t) {
    return t.view({batch, steps, t.size(2) / head_size, head_size}).transpose(1, 2);
  };
  const auto qkv = project_group(qkv_, x);
  const auto q = split_heads(qkv[0]), k = split_heads(qkv[1]), v = split_heads(qkv[2]);
  const auto& [cos, sin] = rotary(q.device(), q.scalar_type());
  const auto cos_rows = cos.narrow(0, start, steps), sin_rows = sin.narrow(0, start, steps);
  if (!fused_rotary) {
    return {functional::apply_rotary(q, cos_rows, sin_rows), functional::apply_rotary(k, cos_rows, sin_rows), v};
  }
  auto [rotated_q, rotated_k] = ops::rotary_embedding(q, k, cos_rows, sin_rows);
  return {rotated_q, rotated_k, v};
}

at::Tensor CausalSelfAttentionImpl::merged_output(const at::Tensor& y) {
  return output_projection(y.transpose(1, 2).reshape({y.size(0), y.size(2), options.width()}));
}

at::Tensor CausalSelfAttentionImpl::output_projection(const at::Tensor& merged) {
  return project(o_, sub_norm ? sub_norm->forward(merged) : merged);
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x, int64_t start, at::Tensor* cached_keys,
                                            at::Tensor* cached_values) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.width(), "CausalSelfAttention: expected input [batch, T, ",
              options.width(), "], got ", x.sizes());
  const int64_t steps = x.size(1);
  TORCH_CHECK(start >= 0 && start + steps <= options.context(), "CausalSelfAttention: positions ", start, "..",
              start + steps - 1, " exceed the context of ", options.context());
  auto [q, k, v] = rotated_heads(x, start);
  std::optional<at::Tensor> mask;
  bool causal = steps > 1;
  if (cached_keys != nullptr) {
    cached_keys->narrow(2, start, steps).copy_(k);
    cached_values->narrow(2, start, steps).copy_(v);
    k = cached_keys->narrow(2, 0, start + steps).to(q.scalar_type());
    v = cached_values->narrow(2, 0, start + steps).to(q.scalar_type());
    if (start > 0) {
      // Query i (position start + i) sees the cache up to start + i.
      causal = false;
      if (steps > 1) mask = at::ones({steps, start + steps}, q.options().dtype(at::kBool)).tril(start);
    }
  }
  // Grouped-query attention: SDPA pairs each key/value head with heads / kv_heads query heads.
  return merged_output(
      at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, std::nullopt, k.size(1) != q.size(1)));
}

at::Tensor CausalSelfAttentionImpl::forward_at(const at::Tensor& x, const at::Tensor& position, at::Tensor& cached_keys,
                                               at::Tensor& cached_values) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == 1 && x.size(2) == options.width(),
              "CausalSelfAttention::forward_at: expected input [batch, 1, ", options.width(), "], got ", x.sizes());
  return attend_at(project_group(qkv_, x), position, cached_keys, cached_values);
}

std::tuple<at::Tensor, at::Tensor> CausalSelfAttentionImpl::forward_at(const ResidualNorm& in,
                                                                       const at::Tensor& position,
                                                                       at::Tensor& cached_keys,
                                                                       at::Tensor& cached_values) {
  TORCH_CHECK(in.input.dim() == 3 && in.input.size(1) == 1 && in.input.size(2) == options.width(),
              "CausalSelfAttention::forward_at: expected input [batch, 1, ", options.width(), "], got ",
              in.input.sizes());
  if (auto joined = project_group_after_norm(qkv_, in)) {
    const auto& [qkv, sum] = *joined;
    return {attend_at(qkv, position, cached_keys, cached_values), sum};
  }
  const auto [normed, sum] = add_and_norm(in);
  return {forward_at(normed, position, cached_keys, cached_values), sum};
}

at::Tensor CausalSelfAttentionImpl::attend_at(const std::vector<at::Tensor>& qkv, const at::Tensor& position,
                                              at::Tensor& cached_keys, at::Tensor& cached_values) {
  const int64_t batch = qkv[0].size(0), heads = options.heads();
  const auto heads_of = [&](const at::Tensor& projected) {
    return projected.view({batch, heads, options.width() / heads}).to(cached_keys.scalar_type());
  };
  const auto& [cos, sin] = rotary(qkv[0].device(), qkv[0].scalar_type());
  const auto y = ops::decode_attention(heads_of(qkv[0]), heads_of(qkv[1]), heads_of(qkv[2]), cached_keys, cached_values,
                                       position, cos, sin);
  return output_projection(y.view({batch, 1, options.width()}).to(qkv[0].scalar_type()));
}

at::Tensor TransformerBlockImpl::forward_at(const at::Tensor& x, const at::Tensor& position, at::Tensor& cached_keys,
                                            at::Tensor& cached_values) {
  const auto h = x + attention->forward_at(attention_norm->forward(x), position, cached_keys, cached_values);
  return h + mlp->forward(mlp_norm->forward(h));
}

MlpImpl::MlpImpl(const TransformerOptions& options_, const ProjectionFactory& make_projection,
                 const std::string& path_prefix)
    : ProjectionHolder(make_projection, path_prefix), options(options_) {
  check_transformer_options(options);
  const int64_t hidden = mlp_hidden_size(options);
  if (options.mlp() != MlpKind::SquaredReLU) gate_ = add_projection("gate", options.width(), hidden);
  up_ = add_projection("up", options.width(), hidden);
  down_ = add_projection("down", hidden, options.width());
  if (options.mlp() != MlpKind::SquaredReLU) gate_up_ = add_projection_group({gate_, up_});
  if (options.sub_norms()) {
    sub_norm = register_module("sub_norm", RMSNorm(RMSNormOptions(hidden).eps(options.norm_eps())));
  }
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  at::Tensor hidden;
  if (options.mlp() == MlpKind::SquaredReLU) {
    if (fused_activation && !sub_norm) {
      if (auto output = project_squared_relu_mlp(up_, down_, x)) return *output;
    }
    hidden = project_squared_relu(up_, x, fused_activation);
  } else {
    const auto gate_up = project_group(gate_up_, x);
    hidden = options.mlp() == MlpKind::SwiGLU ? at::silu(gate_up[0]) * gate_up[1]
                                              : ops::squared_relu(gate_up[0]) * gate_up[1];
  }
  return project(down_, sub_norm ? sub_norm->forward(hidden) : hidden);
}

std::tuple<at::Tensor, at::Tensor> MlpImpl::forward(const ResidualNorm& in) {
  if (options.mlp() == MlpKind::SquaredReLU && fused_activation && !sub_norm) {
    if (auto up = project_squared_relu_after_norm(up_, in)) {
      auto& [hidden, sum] = *up;
      return {project(down_, hidden), sum};
    }
  }
  const auto [normed, sum] = add_and_norm(in);
  return {forward(normed), sum};
}

TransformerBlockImpl::TransformerBlockImpl(const TransformerOptions& options, const ProjectionFactory& make_projection,
                                           const std::string& path_prefix)
    : attention_norm(
          register_module("attention_norm", RMSNorm(RMSNormOptions(options.width()).eps(options.norm_eps())))),
      mlp_norm(register_module("mlp_norm", RMSNorm(RMSNormOptions(options.width()).eps(options.norm_eps())))),
      attention(
          register_module("attention", CausalSelfAttention(options, make_projection, path_prefix + "attention."))),
      mlp(register_module("mlp", Mlp(options, make_projection, path_prefix + "mlp."))) {}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, int64_t start, at::Tensor* cached_keys,
                                         at::Tensor* cached_values) {
  const auto h = x + attention->forward(attention_norm->forward(x), start, cached_keys, cached_values);
  return h + mlp->forward(mlp_norm->forward(h));
}

TransformerLMImpl::TransformerLMImpl(const TransformerOptions& options_, const ProjectionFactory& make_projection)
    : options(options_) {
  check_transformer_options(options);
  embedding = register_module("embedding", torch::nn::Embedding(options.vocab_size(), options.width()));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers(); ++i) {
    blocks->push_back(TransformerBlock(options, make_projection, "blocks." + std::to_string(i) + "."));
  }
  norm = register_module("norm", RMSNorm(RMSNormOptions(options.width()).eps(options.norm_eps())));
  if (!options.tied_embeddings()) {
    head = register_module(
        "head", torch::nn::Linear(torch::nn::LinearOptions(options.width(), options.vocab_size()).bias(false)));
  }
  // GPT-2's initialisation: N(0, 0.02), the projections into the residual stream scaled down
  // by sqrt(2 * layers) so that the stream's variance does not grow with depth.
  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(options.layers()));
  for (const auto& p : named_parameters()) {
    if (p.value().dim() != 2) continue;
    const bool residual =
        p.key().find(".attention.o.") != std::string::npos || p.key().find(".mlp.down.") != std::string::npos;
    p.value().normal_(0.0, residual ? residual_std : 0.02);
  }
}

at::Tensor TransformerLMImpl::forward(const at::Tensor& tokens, KVCache* cache) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
              "TransformerLM: expected int64 tokens [batch, T], got ", tokens.scalar_type(), " ", tokens.sizes());
  const int64_t start = cache != nullptr ? cache->length : 0;
  TORCH_CHECK(tokens.size(1) >= 1 && start + tokens.size(1) <= options.context(), "TransformerLM: ", tokens.size(1),
              " tokens after ", start, " do not fit the context of ", options.context());
  if (cache != nullptr && tokens.size(1) == 1 && !at::GradMode::is_enabled() &&
      decode_step_supported(tokens.device())) {
    // One new token without gradients (generation): the fused decode step, at a position
    // tensor made once for all blocks.
    const auto logits = decode_step(tokens, at::full({1}, start, tokens.options()), *cache);
    cache->length += 1;
    return logits;
  }
  const auto features = final_features(tokens, start, cache);
  if (cache != nullptr) cache->length += tokens.size(1);
  return at::linear(features, head_weight());
}

bool TransformerLMImpl::decode_step_supported(c10::Device device) const {
  return key_value_heads(options) == options.heads() &&
         ops::decode_attention_supports(device, options.width() / options.heads(), options.context());
}

const at::Tensor& TransformerLMImpl::head_weight() const {
  return head ? head->weight : embedding->weight;
}

at::Tensor TransformerLMImpl::final_features(const at::Tensor& tokens, int64_t start, KVCache* cache) {
  auto x = embedding->forward(tokens);
  const auto block_at = [&](size_t i) { return blocks[i]->as<TransformerBlockImpl>(); };
  const auto keys = [&](size_t i) { return cache != nullptr ? &cache->keys[i] : nullptr; };
  const auto values = [&](size_t i) { return cache != nullptr ? &cache->values[i] : nullptr; };
  // Training recomputes each block in the backward instead of keeping its activations.
  const bool checkpoint = activation_checkpointing_ && cache == nullptr && at::GradMode::is_enabled();
  if (!fused_ops_) {
    for (size_t i = 0; i < blocks->size(); ++i) {
      auto* block = block_at(i);
      x = checkpoint ? checkpointed(
                           [block](const std::vector<at::Tensor>& in) {
                             return std::vector<at::Tensor>{block->forward(in[0], 0, nullptr, nullptr)};
                           },
                           {x})
                           .front()
                     : block->forward(x, start, keys(i), values(i));
    }
    return norm->forward(x);
  }
  return fused_blocks(
      x,
      [&](size_t i, const at::Tensor& normed) {
        return block_at(i)->attention->forward(normed, start, keys(i), values(i));
      },
      checkpoint);
}

at::Tensor TransformerLMImpl::fused_blocks(at::Tensor x,
                                           const std::function<at::Tensor(size_t, const at::Tensor&)>& attend,
                                           bool checkpoint) {
  // Each residual add fused with the norm after it (ops::add_rms_norm): in a block the
  // attention's add with the MLP's norm; the MLP's add with the next block's attention norm,
  // or after the last block with the final norm.
  const auto block_at = [&](size_t i) { return blocks[i]->as<TransformerBlockImpl>(); };
  auto normed = block_at(0)->attention_norm->forward(x);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto* block = block_at(i);
    const RMSNormImpl* next = (i + 1 < blocks->size() ? block_at(i + 1)->attention_norm : norm).get();
    // (x, the attention's output) -> (the next norm's output, the block's output)
    const auto rest = [block, next](const at::Tensor& in, const at::Tensor& attended) -> std::vector<at::Tensor> {
      const auto [mlp_input, h] =
          ops::add_rms_norm(in, attended, block->mlp_norm->weight, block->mlp_norm->options.eps());
      const auto [next_normed, out] =
          ops::add_rms_norm(h, block->mlp->forward(mlp_input), next->weight, next->options.eps());
      return {next_normed, out};
    };
    const auto outputs = checkpoint ? checkpointed(
                                          [block, rest](const std::vector<at::Tensor>& in) {
                                            return rest(in[0], block->attention->forward(in[1], 0, nullptr, nullptr));
                                          },
                                          {x, normed})
                                    : rest(x, attend(i, normed));
    normed = outputs[0];
    x = outputs[1];
  }
  return normed;
}

void TransformerLMImpl::set_activation_checkpointing(bool checkpointing) {
  activation_checkpointing_ = checkpointing;
}

void TransformerLMImpl::set_fused_ops(bool fused) {
  fused_ops_ = fused;
  for (const auto& block : *blocks) {
    auto* parts = block->as<TransformerBlockImpl>();
    parts->attention->fused_rotary = fused;
    parts->attention->joined_products = fused;
    parts->mlp->fused_activation = fused;
    parts->mlp->joined_products = fused;
  }
}

at::Tensor TransformerLMImpl::loss(const at::Tensor& tokens, const at::Tensor& targets) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong && tokens.size(1) >= 1 &&
                  tokens.size(1) <= options.context(),
              "TransformerLM::loss: expected int64 tokens [batch, T] with T <= the context of ", options.context(),
              ", got ", tokens.scalar_type(), " ", tokens.sizes());
  TORCH_CHECK(targets.sizes() == tokens.sizes() && targets.scalar_type() == at::kLong,
              "TransformerLM::loss: expected int64 targets of the tokens' shape ", tokens.sizes(), ", got ",
              targets.scalar_type(), " ", targets.sizes());
  return ops::linear_cross_entropy(final_features(tokens, 0, nullptr), head_weight(), targets);
}

at::Tensor TransformerLMImpl::decode_step(const at::Tensor& tokens, const at::Tensor& position, KVCache& cache) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) == 1 && tokens.scalar_type() == at::kLong,
              "TransformerLM::decode_step: expected int64 tokens [batch, 1], got ", tokens.scalar_type(), " ",
              tokens.sizes());
  TORCH_CHECK(position.dim() == 1 && (position.numel() == 1 || position.numel() == tokens.size(0)) &&
                  position.scalar_type() == at::kLong,
              "TransformerLM::decode_step: expected an int64 position [1] or [", tokens.size(0), "], got ",
              position.scalar_type(), " ", position.sizes());
  TORCH_CHECK(key_value_heads(options) == options.heads(),
              "TransformerLM::decode_step: grouped-query attention (kv_heads ", options.kv_heads(), " of ",
              options.heads(), " heads) is generated through forward(tokens, &cache), not the fused decode step");
  auto x = embedding->forward(tokens);
  if (!fused_ops_) {
    for (size_t i = 0; i < blocks->size(); ++i) {
      x = blocks[i]->as<TransformerBlockImpl>()->forward_at(x, position, cache.keys[i], cache.values[i]);
    }
    return at::linear(norm->forward(x), head_weight());
  }
  // Each residual add and the norm after it go into the next part's call (ResidualNorm): a
  // packed projection computes them in its own kernel, so a block launches none for them.
  ResidualNorm in{x, {}, blocks[0]->as<TransformerBlockImpl>()->attention_norm.get()};
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto* block = blocks[i]->as<TransformerBlockImpl>();
    const auto [attended, h] = block->attention->forward_at(in, position, cache.keys[i], cache.values[i]);
    const auto [mlp_output, out] = block->mlp->forward(ResidualNorm{h, attended, block->mlp_norm.get()});
    RMSNormImpl* next =
        i + 1 < blocks->size() ? blocks[i + 1]->as<TransformerBlockImpl>()->attention_norm.get() : norm.get();
    in = ResidualNorm{out, mlp_output, next};
  }
  return at::linear(std::get<0>(add_and_norm(in)), head_weight());
}

KVCache TransformerLMImpl::make_cache(int64_t batch, const at::TensorOptions& tensor_options) const {
  KVCache cache;
  const int64_t heads = key_value_heads(options);
  for (int64_t i = 0; i < options.layers(); ++i) {
    cache.keys.push_back(
        at::zeros({batch, heads, options.context(), options.width() / options.heads()}, tensor_options));
    cache.values.push_back(at::zeros_like(cache.keys.back()));
  }
  return cache;
}

namespace {

// The quantization of the model's projections: that of its first one, if ternary or packed.
std::optional<quant::QuantConfig> projection_quantization(const TransformerLMImpl& model) {
  const auto& attention = *(*model.blocks)[0]->as<TransformerBlockImpl>()->attention;
  const auto& q = *attention.named_children()[0].value();
  if (const auto* ternary = q.as<TernaryLinear>()) return ternary->options.quant();
  if (const auto* packed = q.as<PackedTernaryLinear>()) return packed->options.quant();
  return std::nullopt;
}

}  // namespace

std::vector<int64_t> TransformerLMImpl::packed_ints() const {
  std::vector<int64_t> ints;
  std::vector<double> reals;
  append_numbers({options, projection_quantization(*this)}, ints, reals);
  return ints;
}

std::vector<double> TransformerLMImpl::packed_reals() const {
  std::vector<int64_t> ints;
  std::vector<double> reals;
  append_numbers({options, projection_quantization(*this)}, ints, reals);
  return reals;
}

bool is_transformer_projection(const std::string& path, const torch::nn::LinearImpl&) {
  return path != "head";
}

}  // namespace bittorch::nn
