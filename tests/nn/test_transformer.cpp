// The transformer's parts against references written from their formulas (float64), the KV
// cache against full forward passes, gradients against finite differences, and the whole model
// through convert_to_ternary, pack and a packed file.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "nn/transformer_models.h"
#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::testing::random_model;
using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;
using bittorch::testing::toy_options;
namespace bn = bittorch::nn;

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

at::Tensor reference_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return x / (x.square().mean(-1, true) + eps).sqrt() * weight;
}

// Rotary embeddings pair by pair: (x_i, x_{i+h}) at position p turns by p * base^(-2i/d).
at::Tensor reference_rotary(const at::Tensor& x, int64_t start, double base) {
  const int64_t steps = x.size(-2), d = x.size(-1), h = d / 2;
  auto out = x.clone();
  const auto positions = torch::arange(start, start + steps, kDouble).unsqueeze(-1);  // [T, 1]
  for (int64_t i = 0; i < h; ++i) {
    const auto angle = positions * std::pow(base, -2.0 * i / d);
    const auto a = x.narrow(-1, i, 1), b = x.narrow(-1, i + h, 1);
    out.narrow(-1, i, 1).copy_(a * angle.cos() - b * angle.sin());
    out.narrow(-1, i + h, 1).copy_(b * angle.cos() + a * angle.sin());
  }
  return out;
}

// softmax(q k^T / sqrt(d) with future positions masked) v, heads split and merged, then o.
at::Tensor reference_attention(const at::Tensor& x, const torch::OrderedDict<std::string, at::Tensor>& p,
                               const std::string& prefix, const bn::TransformerOptions& o) {
  const int64_t batch = x.size(0), steps = x.size(1), heads = o.heads(), d = o.width() / heads;
  const auto heads_of = [&](const std::string& name) {
    return x.matmul(p[prefix + name + ".weight"].t()).view({batch, steps, heads, d}).permute({0, 2, 1, 3});
  };
  const auto q = reference_rotary(heads_of("q"), 0, o.rope_base());
  const auto k = reference_rotary(heads_of("k"), 0, o.rope_base());
  const auto v = heads_of("v");
  auto scores = q.matmul(k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  const auto future = torch::ones({steps, steps}, torch::kBool).triu(1);
  scores = scores.masked_fill(future, -INFINITY);
  const auto y = scores.softmax(-1).matmul(v).permute({0, 2, 1, 3}).reshape({batch, steps, o.width()});
  return y.matmul(p[prefix + "o.weight"].t());
}

at::Tensor reference_mlp(const at::Tensor& x, const torch::OrderedDict<std::string, at::Tensor>& p,
                         const std::string& prefix, const bn::TransformerOptions& o) {
  const auto up = x.matmul(p[prefix + "up.weight"].t());
  const auto hidden = o.mlp() == bn::MlpKind::SwiGLU ? x.matmul(p[prefix + "gate.weight"].t()) *
                                                           torch::sigmoid(x.matmul(p[prefix + "gate.weight"].t())) * up
                                                     : torch::relu(up).square();
  return hidden.matmul(p[prefix + "down.weight"].t());
}

at::Tensor reference_logits(const at::Tensor& tokens, bn::TransformerLM& model) {
  const auto p = model->named_parameters();
  const auto& o = model->options;
  auto x = p["embedding.weight"].index_select(0, tokens.flatten()).view({tokens.size(0), tokens.size(1), o.width()});
  for (int64_t i = 0; i < o.layers(); ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    x = x + reference_attention(reference_rms_norm(x, p[b + "attention_norm.weight"], o.norm_eps()), p,
                                b + "attention.", o);
    x = x + reference_mlp(reference_rms_norm(x, p[b + "mlp_norm.weight"], o.norm_eps()), p, b + "mlp.", o);
  }
  return reference_rms_norm(x, p["norm.weight"], o.norm_eps()).matmul(p["head.weight"].t());
}

TEST(Transformer, RmsNormAndRotaryFollowTheFormulas) {
  torch::manual_seed(0);
  const auto x = torch::randn({3, 5, 8});
  const auto weight = torch::randn({8});
  EXPECT_TRUE(torch::allclose(
      bn::functional::rms_norm(x, weight, 1e-6),
      reference_rms_norm(x.to(torch::kDouble), weight.to(torch::kDouble), 1e-6).to(torch::kFloat), 1e-5, 1e-6));
  const auto [cos, sin] = bn::functional::rotary_tables(20, 8, 10000.0, torch::kCPU);
  const auto heads = torch::randn({2, 3, 6, 8});
  for (const int64_t start : {0, 7, 14}) {
    const auto rotated = bn::functional::apply_rotary(heads, cos.narrow(0, start, 6), sin.narrow(0, start, 6));
    EXPECT_TRUE(torch::allclose(rotated, reference_rotary(heads.to(torch::kDouble), start, 10000.0).to(torch::kFloat),
                                1e-5, 1e-5))
        << start;
  }
}

TEST(Transformer, BlocksAndModelFollowTheFormulas) {
  for (const auto mlp : {bn::MlpKind::SquaredReLU, bn::MlpKind::SwiGLU}) {
    auto model = random_model(toy_options(mlp), torch::kDouble, 1);
    const auto tokens = torch::randint(0, 11, {2, 9});
    const auto logits = model->forward(tokens);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 11}));
    const auto expected = reference_logits(tokens, model);
    EXPECT_TRUE(torch::allclose(logits, expected, 1e-9, 1e-10))
        << bn::to_string(mlp) << " max difference " << (logits - expected).abs().max().item<double>();
    // A position sees no later one: changing the last token leaves the others' logits alone.
    auto changed = tokens.clone();
    changed.select(1, 8).fill_(3);
    EXPECT_TRUE(torch::allclose(model->forward(changed).narrow(1, 0, 8), logits.narrow(1, 0, 8), 1e-12, 1e-12));
  }
}

TEST(Transformer, TheCacheGivesTheLogitsOfWholeForwardPasses) {
  auto model = random_model(toy_options(), torch::kFloat, 2);
  const auto tokens = torch::randint(0, 11, {2, 12});
  const auto whole = model->forward(tokens);
  // A prompt of 5, then 1 token, then a chunk of 4 (masked within itself), then 2 single ones:
  // with gradients on (single tokens through SDPA) and off (through ops::decode_attention).
  for (const bool grad : {true, false}) {
    const torch::AutoGradMode grad_mode(grad);
    auto cache = model->make_cache(2, torch::TensorOptions().dtype(torch::kFloat));
    std::vector<at::Tensor> pieces;
    for (const auto [start, count] :
         std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {5, 1}, {6, 4}, {10, 1}, {11, 1}}) {
      pieces.push_back(model->forward(tokens.narrow(1, start, count), &cache));
    }
    EXPECT_EQ(cache.length, 12);
    EXPECT_TRUE(torch::allclose(torch::cat(pieces, 1), whole, 1e-4, 1e-5)) << "grad mode " << grad;
    EXPECT_TRUE(throws_error_mentioning([&] { model->forward(tokens.narrow(1, 0, 5), &cache); },
                                        {"5 tokens after 12", "context of 16"}));
  }
  // The fixed-shape step of CUDA-graph decoding: one position at a time, at a position tensor.
  auto static_cache = model->make_cache(2, torch::TensorOptions().dtype(torch::kFloat));
  auto position = torch::zeros({1}, torch::kLong);
  std::vector<at::Tensor> steps;
  for (int64_t i = 0; i < 12; ++i, position.add_(1)) {
    steps.push_back(model->decode_step(tokens.narrow(1, i, 1), position, static_cache));
  }
  EXPECT_TRUE(torch::allclose(torch::cat(steps, 1), whole, 1e-4, 1e-5));
}

// The model's logits for `tokens`, then every parameter's gradient of a fixed weighting of them.
std::pair<torch::Tensor, std::map<std::string, torch::Tensor>> logits_and_gradients(bn::TransformerLM& model,
                                                                                    const torch::Tensor& tokens) {
  model->zero_grad();
  const auto logits = model->forward(tokens);
  (logits * torch::linspace(-1, 1, logits.size(-1), logits.options())).sum().backward();
  return {logits.detach(), bittorch::testing::gradients_by_name(*model)};
}

// The fused ops (residual adds with the next norm, rotary embeddings) against the blocks' plain
// composition: logits and every gradient, float64 and the ternary model in float32, with and
// without a KV cache.
TEST(Transformer, FusedOpsEqualThePlainComposition) {
  for (const bool ternary : {false, true}) {
    auto model = random_model(toy_options(), ternary ? torch::kFloat : torch::kDouble, 6);
    if (ternary) bn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), bn::is_transformer_projection);
    const auto tokens = torch::randint(0, 11, {2, 10});
    model->set_fused_ops(true);
    const auto [fused_logits, fused_grads] = logits_and_gradients(model, tokens);
    model->set_fused_ops(false);
    const auto [plain_logits, plain_grads] = logits_and_gradients(model, tokens);
    const double tol = ternary ? 1e-5 : 1e-12;
    const std::string what = ternary ? "ternary" : "float64";
    EXPECT_TRUE(torch::allclose(fused_logits, plain_logits, tol, tol)) << what;
    for (const auto& [name, grad] : plain_grads) {
      EXPECT_TRUE(torch::allclose(fused_grads.at(name), grad, tol, tol)) << name << ", " << what;
    }
    const torch::NoGradGuard no_grad;
    auto cache = model->make_cache(2, torch::TensorOptions().dtype(ternary ? torch::kFloat : torch::kDouble));
    model->set_fused_ops(true);
    const auto first = model->forward(tokens.narrow(1, 0, 6), &cache);
    const auto rest = model->forward(tokens.narrow(1, 6, 4), &cache);
    EXPECT_TRUE(torch::allclose(torch::cat({first, rest}, 1), plain_logits, tol * 10, tol * 10)) << what;
    // The one-token decode step, fused and plain, at each sequence's own position.
    const auto position = torch::tensor({3, 7});
    const auto step_tokens = tokens.narrow(1, 0, 1);
    auto plain_cache = cache;
    for (auto& t : plain_cache.keys) t = t.clone();
    for (auto& t : plain_cache.values) t = t.clone();
    const auto fused_step = model->decode_step(step_tokens, position, cache);
    model->set_fused_ops(false);
    const auto plain_step = model->decode_step(step_tokens, position, plain_cache);
    EXPECT_TRUE(torch::allclose(fused_step, plain_step, tol, tol)) << what;
  }
}

// With 8-bit activations the MLP's squared ReLU hands the down projection its rows quantized
// (ops::squared_relu_quantized, MlpImpl::fused_activation) where the plain MLP quantizes them
// in the projection: the same operations, so logits and every gradient bit for bit.
TEST(Transformer, EightBitMlpQuantizesInTheActivationAsThePlainMlp) {
  auto model = random_model(toy_options(), torch::kFloat, 8);
  bn::convert_to_ternary(*model, bittorch::quant::QuantConfig().activation_bits(8), bn::is_transformer_projection);
  const auto tokens = torch::randint(0, 11, {2, 10});
  const auto run = [&](bool fused) {
    for (const auto& block : *model->blocks) block->as<bn::TransformerBlockImpl>()->mlp->fused_activation = fused;
    return logits_and_gradients(model, tokens);
  };
  const auto [fused_logits, fused_grads] = run(true);
  const auto [plain_logits, plain_grads] = run(false);
  EXPECT_TRUE(torch::equal(fused_logits, plain_logits));
  for (const auto& [name, grad] : plain_grads) EXPECT_TRUE(torch::equal(fused_grads.at(name), grad)) << name;
}

// A packed model's fused ops (the up projection's squared ReLU in its kernel, beside the
// fused norms; in the decode step q, k and v joined and each add and norm handed to the
// packed projection after it) against the plain composition: prefill and decode step.
TEST(Transformer, PackedFusedOpsEqualThePlainComposition) {
  auto model = random_model(toy_options(), torch::kFloat, 7);
  bn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), bn::is_transformer_projection);
  bn::pack(*model);
  ASSERT_EQ(bn::fuse_projections(*model), toy_options().layers());
  model->eval();
  const torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(0, 11, {2, 10});
  const auto run = [&](bool fused) {
    model->set_fused_ops(fused);
    auto cache = model->make_cache(2, torch::TensorOptions().dtype(torch::kFloat));
    const auto prefill = model->forward(tokens, &cache);
    const auto step = model->decode_step(tokens.narrow(1, 0, 1), torch::tensor({10, 10}), cache);
    return std::pair{prefill, step};
  };
  const auto [fused_prefill, fused_step] = run(true);
  const auto [plain_prefill, plain_step] = run(false);
  EXPECT_TRUE(torch::allclose(fused_prefill, plain_prefill, 1e-5, 1e-5)) << (fused_prefill - plain_prefill).abs().max();
  EXPECT_TRUE(torch::allclose(fused_step, plain_step, 1e-5, 1e-5)) << (fused_step - plain_step).abs().max();
  // A decode step's part takes one position per sequence.
  auto* block = (*model->blocks)[0]->as<bn::TransformerBlockImpl>();
  auto cache = model->make_cache(2, torch::TensorOptions().dtype(torch::kFloat));
  const int64_t width = toy_options().width();
  const bn::ResidualNorm two_steps{torch::randn({2, 2, width}), torch::randn({2, 2, width}),
                                   block->attention_norm.get()};
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        block->attention->forward_at(two_steps, torch::tensor({1, 1}), cache.keys[0], cache.values[0]);
      },
      {"forward_at", "[batch, 1, "}));
}

// The fused head and loss against cross_entropy of the logits: the loss and every parameter's
// gradient (float64, and the ternary model in float32).
TEST(Transformer, FusedLossEqualsCrossEntropyOfTheLogits) {
  for (const bool ternary : {false, true}) {
    auto model = random_model(toy_options(), ternary ? torch::kFloat : torch::kDouble, 4);
    if (ternary) bn::convert_to_ternary(*model, bittorch::quant::QuantConfig(), bn::is_transformer_projection);
    const auto tokens = torch::randint(0, 11, {3, 9});
    auto targets = torch::randint(0, 11, {3, 9});
    targets[1][4] = -100;  // ignored
    const auto gradients = [&](const at::Tensor& loss) {
      model->zero_grad();
      loss.backward();
      return bittorch::testing::gradients_by_name(*model);
    };
    const auto fused = model->loss(tokens, targets);
    const auto fused_grads = gradients(fused);
    const auto logits = model->forward(tokens);
    const auto plain = torch::nn::functional::cross_entropy(logits.reshape({-1, 11}), targets.reshape({-1}));
    const auto plain_grads = gradients(plain);
    const double tol = ternary ? 1e-5 : 1e-12;
    EXPECT_NEAR(fused.item<double>(), plain.item<double>(), tol) << (ternary ? "ternary" : "float64");
    for (const auto& [name, grad] : plain_grads) {
      EXPECT_TRUE(torch::allclose(fused_grads.at(name), grad, tol, tol)) << name << (ternary ? ", ternary" : "");
    }
  }
  auto model = random_model(toy_options(), torch::kFloat, 4);
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        model->loss(torch::zeros({2, 3}, torch::kLong), torch::zeros({2, 4}, torch::kLong));
      },
      {"targets of the tokens' shape [2, 3]"}));
}

// Central differences of sum(block(x) * r) against autograd, for the input and a weight.
TEST(Transformer, GradientsMatchFiniteDifferences) {
  for (const auto mlp : {bn::MlpKind::SquaredReLU, bn::MlpKind::SwiGLU, bn::MlpKind::GatedSquaredReLU}) {
    torch::manual_seed(3);
    // BitNet 2B4T's block with the gated MLP: two query heads per key head, sub-norms.
    const bool bitnet = mlp == bn::MlpKind::GatedSquaredReLU;
    const auto options =
        bitnet ? toy_options(mlp).width(8).heads(4).kv_heads(2).sub_norms(true) : toy_options(mlp).width(4).heads(2);
    bn::TransformerBlock block(options);
    block->to(torch::kDouble);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : block->parameters()) p.copy_(p.dim() == 1 ? 1 + 0.3 * torch::randn_like(p) : torch::randn_like(p));
    }
    const auto x = torch::randn({1, 3, options.width()}, kDouble).requires_grad_();
    const auto r = torch::randn({1, 3, options.width()}, kDouble);
    const auto objective = [&] { return (block->forward(x) * r).sum(); };
    objective().backward();
    const auto weight = block->named_parameters()["attention.q.weight"];
    for (const auto& [tensor, name] : std::vector<std::pair<at::Tensor, std::string>>{{x, "x"}, {weight, "q"}}) {
      const auto analytic = tensor.grad().clone();
      auto flat = tensor.detach().view({-1});
      for (int64_t i = 0; i < flat.numel(); ++i) {
        constexpr double h = 1e-6;
        const double saved = flat[i].item<double>();
        torch::NoGradGuard no_grad;
        flat[i] = saved + h;
        const double plus = objective().item<double>();
        flat[i] = saved - h;
        const double minus = objective().item<double>();
        flat[i] = saved;
        EXPECT_NEAR(analytic.view({-1})[i].item<double>(), (plus - minus) / (2 * h), 1e-6)
            << bn::to_string(mlp) << " d/d" << name << "[" << i << "]";
      }
    }
  }
}

TEST(Transformer, ConvertPackSaveAndLoadGiveTheTernaryModelsLogits) {
  TempDir dir;
  const auto options = toy_options(bn::MlpKind::SwiGLU);
  const auto config = bittorch::quant::QuantConfig().scale_mode(bittorch::quant::ScaleMode::AbsMean);
  auto model = random_model(options, torch::kFloat, 4);
  EXPECT_EQ(bn::convert_to_ternary(*model, config, bn::is_transformer_projection), options.layers() * 7);
  EXPECT_NE(
      model->blocks[0]->as<bn::TransformerBlockImpl>()->attention->named_children()[0].value()->as<bn::TernaryLinear>(),
      nullptr);
  model->eval();
  const auto tokens = torch::randint(0, 11, {1, 10});
  const auto ternary = model->forward(tokens);
  EXPECT_EQ(bn::pack(*model), options.layers() * 7);
  const auto packed = model->forward(tokens);
  EXPECT_TRUE(torch::allclose(packed, ternary, 1e-4, 1e-4)) << (packed - ternary).abs().max();
  bittorch::save_packed(*model, dir.file("lm.btp"));

  bn::TransformerLM loaded(options);  // the tree of the saved model: converted and packed
  bn::convert_to_ternary(*loaded, config, bn::is_transformer_projection);
  bittorch::pack(*loaded);
  bittorch::load_packed_into(*loaded, dir.file("lm.btp"));
  loaded->eval();
  EXPECT_TRUE(torch::equal(loaded->forward(tokens), packed));
  // The file alone rebuilds the model: sizes and quantization are in the root's record.
  auto rebuilt = bittorch::load_packed_transformer(dir.file("lm.btp"));
  EXPECT_TRUE(torch::equal(rebuilt->forward(tokens), packed));
  EXPECT_EQ(bittorch::read_packed_numbers(dir.file("lm.btp")).ints,
            (std::vector<int64_t>{11, 2, 12, 3, 16, 2, 1, 1, 0, 1, 1, 0, 0, 0, 0}));
  // Full-precision arrays stored in bfloat16 are widened to float32 on the CPU, exactly.
  bittorch::save_packed(*model, dir.file("lm_bf16.btp"), torch::kBFloat16);
  auto widened = bittorch::load_packed_transformer(dir.file("lm_bf16.btp"));
  EXPECT_EQ(widened->embedding->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(
      torch::equal(widened->embedding->weight, model->embedding->weight.to(torch::kBFloat16).to(torch::kFloat)));
  // So does a full-precision model's.
  auto full = random_model(options, torch::kFloat, 6);
  full->eval();
  bittorch::save_packed(*full, dir.file("fp.btp"));
  EXPECT_TRUE(
      torch::equal(bittorch::load_packed_transformer(dir.file("fp.btp"))->forward(tokens), full->forward(tokens)));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bittorch::save_packed(torch::nn::Sequential(torch::nn::Linear(2, 2)), dir.file("seq.btp"));
        bittorch::load_packed_transformer(dir.file("seq.btp"));
      },
      {"seq.btp", "no TransformerLM"}));
  // A model of another width is refused, naming the module.
  bn::TransformerLM wider(toy_options(bn::MlpKind::SwiGLU).width(18));
  bn::convert_to_ternary(*wider, config, bn::is_transformer_projection);
  bittorch::pack(*wider);
  EXPECT_TRUE(
      throws_error_mentioning([&] { bittorch::load_packed_into(*wider, dir.file("lm.btp")); }, {"(root)", "differs"}));
}

// BitNet b1.58 2B4T's options (grouped-query attention, sub-norms, the gated squared-ReLU MLP
// with its own hidden size, tied embeddings): the model's shapes, JSON and packed numbers both
// ways (records from before these options read as their defaults), a packed file round trip,
// and generation through the cache equal to the whole sequence at once. Its logits against
// transformers' BitNet model: tests/python/test_hf_interop.py.
TEST(Transformer, BitNetOptionsRoundTrip) {
  const auto options = toy_options(bn::MlpKind::GatedSquaredReLU)
                           .width(16)
                           .heads(4)
                           .kv_heads(2)
                           .mlp_hidden(24)
                           .sub_norms(true)
                           .tied_embeddings(true)
                           .rope_base(500000.0);
  auto model = random_model(options, torch::kFloat, 8);
  model->eval();
  const auto params = model->named_parameters();
  EXPECT_EQ(params["blocks.0.attention.k.weight"].sizes(), torch::IntArrayRef({8, 16}));  // 2 heads of 4
  EXPECT_EQ(params["blocks.0.mlp.gate.weight"].sizes(), torch::IntArrayRef({24, 16}));
  EXPECT_EQ(params["blocks.1.attention.sub_norm.weight"].sizes(), torch::IntArrayRef({16}));
  EXPECT_EQ(params["blocks.1.mlp.sub_norm.weight"].sizes(), torch::IntArrayRef({24}));
  EXPECT_FALSE(params.contains("head.weight"));
  EXPECT_TRUE(model->head_weight().is_same(model->embedding->weight));

  const auto json = bn::to_json(options);
  const auto back = bn::transformer_options_from_json(json);
  EXPECT_EQ(bn::to_json(back), json);
  const std::string old_record =  // toy_options() as checkpoints recorded them before these options
      R"({"context":16,"heads":3,"layers":2,"mlp":"squared_relu","mlp_ratio":2,"norm_eps":1e-06,)"
      R"("rope_base":10000.0,"vocab_size":11,"width":12})";
  EXPECT_EQ(bn::to_json(bn::transformer_options_from_json(old_record)), bn::to_json(toy_options()));
  std::vector<int64_t> ints;
  std::vector<double> reals;
  bn::append_numbers({options, std::nullopt}, ints, reals);
  EXPECT_EQ(bn::to_json(bn::transformer_from_numbers(ints, reals).options), json);
  ints.resize(ints.size() - 4);  // a file from before these options
  EXPECT_EQ(bn::transformer_from_numbers(ints, reals).options.kv_heads(), 0);

  TempDir dir;
  const auto tokens = torch::randint(0, 11, {2, 9});
  const auto whole = model->forward(tokens);
  bittorch::save_packed(*model, dir.file("bitnet.btp"));
  auto loaded = bittorch::load_packed_transformer(dir.file("bitnet.btp"));
  EXPECT_EQ(bn::to_json(loaded->options), json);
  EXPECT_TRUE(torch::equal(loaded->forward(tokens), whole));
  const torch::NoGradGuard no_grad;
  auto cache = model->make_cache(2, torch::TensorOptions());
  EXPECT_EQ(cache.keys[0].size(1), 2);
  std::vector<at::Tensor> steps = {model->forward(tokens.narrow(1, 0, 4), &cache)};
  for (int64_t i = 4; i < 9; ++i) steps.push_back(model->forward(tokens.narrow(1, i, 1), &cache));
  EXPECT_TRUE(torch::allclose(torch::cat(steps, 1), whole, 1e-5, 1e-5));
  EXPECT_FALSE(model->decode_step_supported(torch::kCPU));
  EXPECT_TRUE(
      throws_error_mentioning([] { bn::TransformerLM(bn::TransformerOptions().heads(4).width(16).kv_heads(3)); },
                              {"kv_heads (3)", "heads (4)"}));
}

TEST(Transformer, OptionsArePresetsAndChecked) {
  bn::TransformerLM small(bn::transformer_preset("small"));
  int64_t parameters = 0;
  for (const auto& p : small->parameters()) parameters += p.numel();
  EXPECT_NEAR(parameters / 1e6, 10.8, 0.1);
  EXPECT_TRUE(throws_error_mentioning([] { bn::transformer_preset("huge"); }, {"'huge'", "tiny, small"}));
  // BitNet b1.58 2B4T's config.json: hidden_size 2560, 30 layers, 20 heads, 5 key/value heads,
  // intermediate_size 6912, relu2, vocabulary 128256, 4096 positions, rope_theta 500000.
  const auto bitnet = bn::transformer_preset("bitnet-2b4t");
  EXPECT_EQ(std::vector<int64_t>({bitnet.width(), bitnet.layers(), bitnet.heads(), bn::key_value_heads(bitnet),
                                  bn::mlp_hidden_size(bitnet), bitnet.vocab_size(), bitnet.context()}),
            std::vector<int64_t>({2560, 30, 20, 5, 6912, 128256, 4096}));
  EXPECT_TRUE(bitnet.mlp() == bn::MlpKind::GatedSquaredReLU && bitnet.sub_norms() && bitnet.tied_embeddings());
  EXPECT_EQ(bitnet.rope_base(), 500000.0);
  EXPECT_NO_THROW(bn::check_transformer_options(bitnet));
  EXPECT_TRUE(throws_error_mentioning([] { bn::TransformerLM(bn::TransformerOptions().width(10).heads(4)); },
                                      {"width (10)", "heads (4)"}));
  EXPECT_TRUE(throws_error_mentioning([] { bn::TransformerLM(bn::TransformerOptions().width(6).heads(2)); }, {"even"}));
  EXPECT_TRUE(throws_error_mentioning([] { bn::mlp_kind_from_string("gelu"); }, {"'gelu'", "swiglu"}));
  EXPECT_EQ(bn::mlp_hidden_size(bn::TransformerOptions().width(384).mlp(bn::MlpKind::SwiGLU)), 1024);
}

}  // namespace
