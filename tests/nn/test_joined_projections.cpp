// Projections that read one input computed as one product of their stacked rows
// (functional::joined_ternary_linear, TernaryLinearImpl::forward_joined) against each layer on
// its own through the unfused path (the ternarize op, then torch's linear: the formulas), and
// what cannot be joined.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "reference.h"

namespace {

namespace bn = bittorch::nn;
using bittorch::quant::QuantConfig;
using bittorch::testing::throws_error_mentioning;

// Three layers of one input, as q, k and v: 24 features in, 10, 6 and 6 out.
std::vector<bn::TernaryLinear> qkv_layers(const bn::TernaryLinearOptions& options) {
  std::vector<bn::TernaryLinear> layers;
  for (const int64_t out : {10, 6, 6}) {
    auto layer_options = options;
    layers.emplace_back(layer_options.out_features(out));
  }
  return layers;
}

std::vector<bn::TernaryLinearImpl*> pointers(std::vector<bn::TernaryLinear>& layers) {
  std::vector<bn::TernaryLinearImpl*> raw;
  for (auto& layer : layers) raw.push_back(layer.get());
  return raw;
}

// forward_joined's outputs side by side, split into each layer's.
std::optional<std::vector<torch::Tensor>> joined_forward(std::vector<bn::TernaryLinear>& layers,
                                                         const torch::Tensor& x) {
  const auto joined = bn::TernaryLinearImpl::forward_joined(pointers(layers), x);
  if (!joined) return std::nullopt;
  std::vector<int64_t> widths;
  for (auto& layer : layers) widths.push_back(layer->options.out_features());
  return joined->split_with_sizes(widths, -1);
}

// The outputs, then the input's gradient, then each layer's weight and bias gradients, of a
// loss that weights every output differently.
std::vector<torch::Tensor> outputs_and_gradients(std::vector<bn::TernaryLinear>& layers, const torch::Tensor& x,
                                                 bool joined) {
  for (auto& layer : layers) layer->zero_grad();
  const auto input = x.detach().requires_grad_();
  std::vector<torch::Tensor> outputs;
  if (joined) {
    const auto joined_outputs = joined_forward(layers, input);
    EXPECT_TRUE(joined_outputs.has_value());
    if (!joined_outputs) return {};
    outputs = *joined_outputs;
  } else {
    for (auto& layer : layers) outputs.push_back(layer(input));
  }
  auto loss = torch::zeros({}, x.options());
  for (const auto& y : outputs) loss = loss + (y * torch::linspace(-1, 2, y.numel(), y.options()).view_as(y)).sum();
  loss.backward();
  std::vector<torch::Tensor> result;
  for (const auto& y : outputs) result.push_back(y.detach());
  result.push_back(input.grad());
  for (auto& layer : layers) {
    result.push_back(layer->weight.grad().clone());
    if (layer->bias.defined()) result.push_back(layer->bias.grad().clone());
  }
  return result;
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].sizes(), b[i].sizes()) << what << ": tensor " << i;
    EXPECT_TRUE(torch::allclose(a[i], b[i], tol, tol))
        << what << ": tensor " << i << ", largest difference " << (a[i] - b[i]).abs().max().item<double>();
  }
}

// Outputs and every gradient as each layer computes them alone, fused and from the formulas
// (fused(false)): 16-bit and 8-bit activations, per channel and global scales, with and
// without biases, on inputs of two and three dimensions.
TEST(JoinedTernaryLinear, EqualsEachLayerOnItsOwn) {
  torch::manual_seed(5);
  for (const int64_t bits : {0, 8}) {
    for (const bool per_channel : {true, false}) {
      for (const bool bias : {true, false}) {
        const auto options = bn::TernaryLinearOptions(24, 1).bias(bias).quant(
            QuantConfig().activation_bits(bits).per_channel(per_channel));
        auto layers = qkv_layers(options);
        auto reference = qkv_layers(bn::TernaryLinearOptions(options).fused(false));
        for (size_t i = 0; i < layers.size(); ++i) {
          torch::NoGradGuard no_grad;
          reference[i]->weight.copy_(layers[i]->weight);
          if (bias) reference[i]->bias.copy_(layers[i]->bias);
        }
        for (const auto& shape : {std::vector<int64_t>{7, 24}, std::vector<int64_t>{2, 5, 24}}) {
          const auto x = torch::randn(shape);
          const auto what = c10::str("bits ", bits, " per_channel ", per_channel, " bias ", bias, " input ", x.sizes());
          const auto joined = outputs_and_gradients(layers, x, /*joined=*/true);
          expect_close(joined, outputs_and_gradients(layers, x, /*joined=*/false), 1e-5, what + ", fused layers");
          auto formulas = outputs_and_gradients(reference, x, /*joined=*/false), compared = joined;
          if (bits == 8) {
            // The fused op takes grad_w from the unquantized input, the unfused path from the
            // dequantized one (docs/cpp-api.md): the weights' gradients are compared above.
            for (size_t layer = layers.size(); layer-- > 0;) {
              const size_t index = layers.size() + 1 + layer * (bias ? 2 : 1);
              formulas.erase(formulas.begin() + static_cast<int64_t>(index));
              compared.erase(compared.begin() + static_cast<int64_t>(index));
            }
          }
          expect_close(compared, formulas, 1e-5, what + ", formulas");
        }
      }
    }
  }
}

// Gradients of two backward passes add up in each weight's own gradient, as for separate
// layers (the joined backward hands out views of one gradient tensor).
TEST(JoinedTernaryLinear, GradientsAccumulate) {
  torch::manual_seed(6);
  auto layers = qkv_layers(bn::TernaryLinearOptions(24, 1).bias(false));
  const auto x = torch::randn({4, 24});
  const auto once = outputs_and_gradients(layers, x, /*joined=*/true);
  for (auto& layer : layers) layer->zero_grad();
  for (int pass = 0; pass < 2; ++pass) {
    auto loss = torch::zeros({});
    const auto outputs = joined_forward(layers, x).value();
    for (const auto& y : outputs) {
      loss = loss + (y * torch::linspace(-1, 2, y.numel()).view_as(y)).sum();
    }
    loss.backward();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_TRUE(torch::allclose(layers[i]->weight.grad(), 2 * once[4 + i], 1e-5, 1e-6)) << "layer " << i;
  }
}

// Inside a KeepQuantizedWeights scope the joined product uses each layer's kept weight: the
// same results as quantizing on every call.
TEST(JoinedTernaryLinear, UsesEachLayersKeptWeight) {
  torch::manual_seed(7);
  auto layers = qkv_layers(bn::TernaryLinearOptions(24, 1).quant(QuantConfig().activation_bits(8)));
  const auto x = torch::randn({3, 24});
  const auto every_call = outputs_and_gradients(layers, x, /*joined=*/true);
  bn::KeepQuantizedWeights keep;
  expect_close(outputs_and_gradients(layers, x, /*joined=*/true), every_call, 0, "first call in the scope");
  expect_close(outputs_and_gradients(layers, x, /*joined=*/true), every_call, 0, "kept");
}

// In a scope where one layer kept its weight with the operand (an earlier call with grad_input)
// and the others quantize without it (no gradients), the joined product still runs.
TEST(JoinedTernaryLinear, MixedKeptOperands) {
  torch::manual_seed(9);
  auto layers = qkv_layers(bn::TernaryLinearOptions(24, 1).quant(QuantConfig().activation_bits(8)));
  const auto x = torch::randn({3, 24});
  bn::KeepQuantizedWeights keep;
  layers[0](x.detach().requires_grad_());
  const torch::NoGradGuard no_grad;
  const auto joined = joined_forward(layers, x).value();
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_TRUE(torch::allclose(joined[i], layers[i](x), 1e-5, 1e-6)) << "layer " << i;
  }
}

// Layers that differ in anything but their outputs, or whose options rule the join out (the
// unfused path, no quantization, FP8 gradients), are not joined; the functional form says why.
TEST(JoinedTernaryLinear, WhatCannotBeJoined) {
  const auto options = bn::TernaryLinearOptions(24, 1).bias(false);
  const auto x = torch::randn({2, 24});
  const auto unjoined = [&](std::vector<bn::TernaryLinear> layers) {
    return !bn::TernaryLinearImpl::forward_joined(pointers(layers), x).has_value();
  };
  EXPECT_TRUE(unjoined(qkv_layers(bn::TernaryLinearOptions(options).fused(false))));
  EXPECT_TRUE(unjoined(qkv_layers(bn::TernaryLinearOptions(options).quantize(false))));
  EXPECT_TRUE(unjoined(qkv_layers(bn::TernaryLinearOptions(options).quant(QuantConfig().gradient_bits(8)))));
  auto mixed = qkv_layers(options);
  mixed[1] =
      bn::TernaryLinear(bn::TernaryLinearOptions(options).out_features(6).quant(QuantConfig().per_channel(false)));
  EXPECT_TRUE(unjoined(mixed));
  auto with_bias = qkv_layers(options);
  with_bias[2] = bn::TernaryLinear(bn::TernaryLinearOptions(options).out_features(6).bias(true));
  EXPECT_TRUE(unjoined(with_bias));
  auto one = qkv_layers(options);
  one.erase(one.begin() + 1, one.end());
  EXPECT_TRUE(unjoined(one));

  const auto weights = std::vector<torch::Tensor>{torch::randn({4, 24}), torch::randn({3, 24})};
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bn::functional::joined_ternary_linear(x, weights, {}, bn::functional::TernaryLinearFuncOptions().fused(false));
      },
      {"fused(true)"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] { bn::functional::joined_ternary_linear(x, weights, {torch::zeros({4})}, {}); }, {"2 weights, 1 biases"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bn::functional::joined_ternary_linear(x, weights, {torch::zeros({4}), torch::Tensor()}, {});
      },
      {"a bias for every weight or for none"}));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        bn::functional::joined_ternary_linear(torch::randn({2, 20}), weights, {}, {});
      },
      {"in_features"}));
}

// The transformer's projections, TernaryLinear and torch::nn::Linear, joined (the default) and
// each on its own: logits and every gradient, with 8-bit activations.
TEST(JoinedTernaryLinear, TransformerJoinedEqualsSeparate) {
  for (const bool ternary : {false, true}) {
    torch::manual_seed(8);
    bn::TransformerLM model(bn::TransformerOptions().vocab_size(13).width(16).heads(2).layers(2).context(8));
    if (ternary) {
      bn::convert_to_ternary(*model, QuantConfig().activation_bits(8), bn::is_transformer_projection);
    }
    const auto tokens = torch::randint(0, 13, {2, 8});
    const auto run = [&](bool joined) {
      for (const auto& block : *model->blocks) {
        block->as<bn::TransformerBlockImpl>()->attention->joined_products = joined;
        block->as<bn::TransformerBlockImpl>()->mlp->joined_products = joined;
      }
      model->zero_grad();
      const auto loss = model->loss(tokens, tokens.roll(1, 1));
      loss.backward();
      std::vector<torch::Tensor> result = {loss.detach()};
      for (const auto& p : model->parameters()) result.push_back(p.grad().clone());
      return result;
    };
    expect_close(run(true), run(false), 1e-5, ternary ? "ternary, 8-bit activations" : "torch::nn::Linear");
  }
}

}  // namespace
