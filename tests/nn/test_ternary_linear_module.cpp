#include <bittorch/bittorch.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <sstream>

#include "reference.h"

namespace {

using bittorch::nn::KeepQuantizedWeights;
using bittorch::nn::TernaryLinear;
using bittorch::nn::TernaryLinearOptions;
using bittorch::quant::ScaleMode;
using bittorch::testing::throws_error_mentioning;

TEST(TernaryLinearModule, DefaultOptions) {
  const TernaryLinearOptions options(3, 4);
  EXPECT_EQ(options.in_features(), 3);
  EXPECT_EQ(options.out_features(), 4);
  EXPECT_TRUE(options.bias());
  EXPECT_EQ(options.quant().threshold_factor(), 0.05);
  EXPECT_TRUE(options.quant().per_channel());
  EXPECT_EQ(options.quant().activation_bits(), 0);
  EXPECT_EQ(options.quant().scale_mode(), ScaleMode::Max);
  EXPECT_TRUE(options.quantize());
  EXPECT_TRUE(options.fused());
  EXPECT_FALSE(options.cuda_only());
  EXPECT_TRUE(options.keep_quantized_weight());
}

// Output and gradients of `layer` on `x` (gradients zeroed first).
std::vector<torch::Tensor> output_and_gradients(TernaryLinear& layer, const torch::Tensor& x) {
  layer->zero_grad();
  const auto input = x.detach().requires_grad_();
  const auto y = layer(input);
  y.pow(2).sum().backward();
  return {y.detach(), input.grad(), layer->weight.grad().clone(), layer->bias.grad().clone()};
}

void expect_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << what << ": tensor " << i;
}

// Inside a KeepQuantizedWeights scope the layer quantizes once and gives what it gives outside,
// bit for bit, forward and backward: 16-bit and 8-bit activations, a float32 weight with
// float32 and bfloat16 inputs, per channel and global.
TEST(KeepQuantizedWeights, SameOutputsAndGradientsAsQuantizingEveryCall) {
  torch::manual_seed(71);
  for (const int64_t bits : {0, 8}) {
    for (const bool per_channel : {true, false}) {
      for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
        TernaryLinear layer(TernaryLinearOptions(24, 10).quant(
            bittorch::quant::QuantConfig().activation_bits(bits).per_channel(per_channel)));
        const auto x = torch::randn({5, 24}).to(dtype);
        if (dtype != torch::kFloat) layer->bias.set_data(layer->bias.detach().to(dtype));
        const auto what = c10::str("bits ", bits, " per_channel ", per_channel, " ", dtype);
        const auto every_call = output_and_gradients(layer, x);
        KeepQuantizedWeights keep;
        expect_equal(output_and_gradients(layer, x), every_call, what + ", first call in the scope");
        expect_equal(output_and_gradients(layer, x), every_call, what + ", kept");
        torch::NoGradGuard no_grad;
        EXPECT_TRUE(torch::equal(layer(x), every_call[0])) << what << ", without gradients";
      }
    }
  }
}

// The kept weight is used again (a write through .data(), which is no change to the version
// counter, is not seen), dropped when the outermost scope ends, and replaced when the weight
// changes in place through the tensor.
TEST(KeepQuantizedWeights, ReusedUntilTheWeightChangesOrTheScopeEnds) {
  torch::manual_seed(72);
  TernaryLinear layer(8, 4);
  const auto x = torch::randn({3, 8});
  torch::NoGradGuard no_grad;
  const auto before = layer(x);
  {
    KeepQuantizedWeights outer;
    EXPECT_TRUE(torch::equal(layer(x), before));
    layer->weight.data().neg_();
    {
      KeepQuantizedWeights inner;
      EXPECT_TRUE(torch::equal(layer(x), before)) << "the kept weight, not the new one";
    }
    EXPECT_TRUE(torch::equal(layer(x), before)) << "an inner scope's end drops nothing";
  }
  const auto negated = layer(x);
  EXPECT_FALSE(torch::equal(negated, before)) << "dropped at the end of the outer scope";
  KeepQuantizedWeights keep;
  EXPECT_TRUE(torch::equal(layer(x), negated));
  layer->weight.mul_(0.5);  // through the tensor: its version counter moves
  TernaryLinear fresh(8, 4);
  fresh->weight.copy_(layer->weight);
  fresh->bias.copy_(layer->bias);
  fresh->options.keep_quantized_weight(false);
  EXPECT_TRUE(torch::equal(layer(x), fresh(x)));
}

// Gradient accumulation over micro-batches inside a scope equals it without one, and a
// clone keeps nothing of the original's kept weight.
TEST(KeepQuantizedWeights, AccumulationAndClones) {
  torch::manual_seed(73);
  TernaryLinear layer(TernaryLinearOptions(16, 6).quant(bittorch::quant::QuantConfig().activation_bits(8)));
  const auto batches = torch::randn({3, 4, 16});
  const auto accumulate = [&] {
    layer->zero_grad();
    for (int64_t i = 0; i < batches.size(0); ++i) layer(batches[i]).sum().backward();
    return std::vector<torch::Tensor>{layer->weight.grad().clone(), layer->bias.grad().clone()};
  };
  const auto every_call = accumulate();
  {
    KeepQuantizedWeights keep;
    expect_equal(accumulate(), every_call, "accumulated in a scope");
    auto copy = std::dynamic_pointer_cast<bittorch::nn::TernaryLinearImpl>(layer->clone());
    torch::NoGradGuard no_grad;
    copy->weight.neg_();
    EXPECT_TRUE(torch::allclose(copy->forward(batches[0]), -layer(batches[0]) + 2 * layer->bias, 1e-5, 1e-5))
        << "the clone quantizes its own weight";
  }
}

TEST(TernaryLinearModule, ParametersAndInitMatchTorchLinear) {
  torch::manual_seed(10);
  torch::nn::Linear linear(13, 5);
  torch::manual_seed(10);
  TernaryLinear ternary(13, 5);
  EXPECT_TRUE(torch::equal(ternary->weight, linear->weight));
  EXPECT_TRUE(torch::equal(ternary->bias, linear->bias));
  EXPECT_EQ(ternary->named_parameters().keys(), linear->named_parameters().keys());
  TernaryLinear no_bias(TernaryLinearOptions(13, 5).bias(false));
  EXPECT_FALSE(no_bias->bias.defined());
  EXPECT_EQ(no_bias->parameters().size(), 1u);
}

TEST(TernaryLinearModule, ForwardUsesTheQuantizedWeight) {
  torch::manual_seed(11);
  for (auto mode : {ScaleMode::Max, ScaleMode::AbsMean}) {
    for (bool per_channel : {true, false}) {
      TernaryLinear layer(
          TernaryLinearOptions(9, 4).quant(bittorch::quant::QuantConfig().scale_mode(mode).per_channel(per_channel)));
      const auto input = torch::randn({6, 9});
      const auto [codes, scale] = layer->get_quantized_weight();
      EXPECT_EQ(codes.scalar_type(), torch::kFloat);
      EXPECT_TRUE(((codes == -1) | (codes == 0) | (codes == 1)).all().item<bool>());
      EXPECT_EQ(scale.sizes(), torch::IntArrayRef({per_channel ? 4 : 1}));
      const auto expected = torch::nn::functional::linear(input, codes * scale.unsqueeze(1), layer->bias);
      EXPECT_TRUE(torch::allclose(layer(input), expected, 1e-5, 1e-6));
    }
  }
}

TEST(TernaryLinearModule, GlobalScalingTrainsForwardAndBackward) {
  torch::manual_seed(12);
  TernaryLinear layer(TernaryLinearOptions(8, 3).quant(bittorch::quant::QuantConfig().per_channel(false)));
  const auto input = torch::randn({4, 2, 8});
  layer(input).sum().backward();
  ASSERT_TRUE(layer->weight.grad().defined());
  EXPECT_TRUE(torch::isfinite(layer->weight.grad()).all().item<bool>());
  EXPECT_EQ(layer->weight.grad().sizes(), layer->weight.sizes());
}

TEST(TernaryLinearModule, WithoutQuantizationEqualsTorchLinear) {
  torch::manual_seed(13);
  torch::nn::Linear linear(6, 3);
  TernaryLinear ternary(TernaryLinearOptions(6, 3).quantize(false));
  {
    torch::NoGradGuard no_grad;
    ternary->weight.copy_(linear->weight);
    ternary->bias.copy_(linear->bias);
  }
  const auto input = torch::randn({5, 6});
  const auto grad = torch::randn({5, 3});
  const auto y_ours = ternary(input);
  const auto y_theirs = linear(input);
  y_ours.backward(grad);
  y_theirs.backward(grad);
  EXPECT_TRUE(torch::equal(y_ours, y_theirs));
  EXPECT_TRUE(torch::equal(ternary->weight.grad(), linear->weight.grad()));
  EXPECT_TRUE(torch::equal(ternary->bias.grad(), linear->bias.grad()));
}

TEST(TernaryLinearModule, RejectsBadOptions) {
  EXPECT_TRUE(throws_error_mentioning([] { TernaryLinear(0, 3); }, {"in_features", ">= 1", "0"}));
  EXPECT_TRUE(throws_error_mentioning([] { TernaryLinear(3, -1); }, {"out_features", "-1"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] { TernaryLinear(TernaryLinearOptions(3, 2).quant(bittorch::quant::QuantConfig().threshold_factor(1.01))); },
      {"threshold_factor in [0, 1]", "1.01"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] { TernaryLinear(TernaryLinearOptions(3, 2).quant(bittorch::quant::QuantConfig().activation_bits(16))); },
      {"activation_bits", "0 (off) or 8", "16"}));
  TernaryLinear layer(3, 2);
  EXPECT_TRUE(throws_error_mentioning([&] { layer(torch::randn({4, 5})); }, {"in_features = 3", "[4, 5]"}));
  EXPECT_TRUE(throws_error_mentioning([&] { layer(torch::ones({4, 3}, torch::kInt)); }, {"floating point", "Int"}));
}

TEST(TernaryLinearModule, PrettyPrint) {
  std::ostringstream stream;
  stream << *TernaryLinear(
      TernaryLinearOptions(4, 2).bias(false).quant(bittorch::quant::QuantConfig().scale_mode(ScaleMode::AbsMean)));
  EXPECT_EQ(stream.str(),
            "bittorch::nn::TernaryLinear(in_features=4, out_features=2, bias=false, "
            "scale_mode=absmean, threshold_factor=0.05, per_channel=true, activation_bits=0, "
            "quantize=true)");
}

// TernaryLinearCUDA's CPU-side behaviour (its CUDA results are in the CUDA tests): the same
// parameters and initialization as TernaryLinear, and a clear error for CPU tensors.
TEST(TernaryLinearCUDAModule, SameParametersAndAClearErrorOnTheCpu) {
  using bittorch::nn::TernaryLinearCUDA;
  using bittorch::nn::TernaryLinearCUDAOptions;
  torch::manual_seed(12);
  TernaryLinearCUDA cuda_layer(TernaryLinearCUDAOptions(6, 4).quant(bittorch::quant::QuantConfig().activation_bits(8)));
  torch::manual_seed(12);
  TernaryLinear layer(6, 4);
  EXPECT_TRUE(torch::equal(cuda_layer->weight, layer->weight));
  EXPECT_TRUE(torch::equal(cuda_layer->bias, layer->bias));
  EXPECT_TRUE(throws_error_mentioning(
      [&] {
        cuda_layer(torch::randn({2, 6}));
      },
      {"TernaryLinearCUDA", "CUDA device", "cpu", "TernaryLinear"}));
  EXPECT_TRUE(throws_error_mentioning(
      [] {
        TernaryLinearCUDA(TernaryLinearCUDAOptions(6, 4).quant(bittorch::quant::QuantConfig().activation_bits(4)));
      },
      {"activation_bits", "4"}));
  std::ostringstream stream;
  stream << *cuda_layer;
  EXPECT_NE(stream.str().find("bittorch::nn::TernaryLinearCUDA(in_features=6, out_features=4"), std::string::npos);
}

TEST(TernaryLinearModule, CloneIsDeep) {
  torch::manual_seed(14);
  TernaryLinear layer(TernaryLinearOptions(5, 3).quant(bittorch::quant::QuantConfig().threshold_factor(0.2)));
  auto copy = std::dynamic_pointer_cast<bittorch::nn::TernaryLinearImpl>(layer->clone());
  ASSERT_TRUE(copy);
  EXPECT_TRUE(torch::equal(copy->weight, layer->weight));
  EXPECT_EQ(copy->options.quant().threshold_factor(), 0.2);
  {
    torch::NoGradGuard no_grad;
    copy->weight.add_(1.0);
  }
  EXPECT_FALSE(torch::equal(copy->weight, layer->weight));
  EXPECT_NE(copy->weight.data_ptr(), layer->weight.data_ptr());
}

struct TwoLayerNet : torch::nn::Module {
  TwoLayerNet()
      : fc1(register_module("fc1", TernaryLinear(4, 16))),
        fc2(register_module("fc2", TernaryLinear(TernaryLinearOptions(16, 1).quant(
                                       bittorch::quant::QuantConfig().scale_mode(ScaleMode::AbsMean))))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  TernaryLinear fc1, fc2;
};

TEST(TernaryLinearModule, SaveLoadRoundTripsBitExactly) {
  torch::manual_seed(15);
  auto model = std::make_shared<TwoLayerNet>();
  std::stringstream stream;
  torch::save(model, stream);
  auto loaded = std::make_shared<TwoLayerNet>();  // different random init
  torch::load(loaded, stream);
  const auto original = model->named_parameters();
  const auto restored = loaded->named_parameters();
  ASSERT_EQ(original.size(), restored.size());
  for (const auto& item : original) {
    EXPECT_TRUE(torch::equal(item.value(), restored[item.key()])) << item.key();
  }
  const auto input = torch::randn({3, 4});
  EXPECT_TRUE(torch::equal(model->forward(input), loaded->forward(input)));
}

TEST(TernaryLinearModule, TwoLayerModelLearnsASyntheticTask) {
  torch::manual_seed(16);
  auto model = std::make_shared<TwoLayerNet>();
  // Target: a fixed random linear function of the inputs.
  const auto x = torch::randn({256, 4});
  const auto y = x.mm(torch::randn({4, 1}));
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  const auto loss_at = [&] { return torch::mse_loss(model->forward(x), y); };
  const double initial = loss_at().item<double>();
  for (int step = 0; step < 300; ++step) {
    optimizer.zero_grad();
    auto loss = loss_at();
    loss.backward();
    optimizer.step();
  }
  const double final_loss = loss_at().item<double>();
  EXPECT_LT(final_loss, 0.25 * initial) << "initial " << initial << " final " << final_loss;
}

// torch::load of a 784x256 layer into a TernaryLinear(100, 10) is refused (torch's own
// Module::load would take it, leaving options and weight disagreeing), and the layer keeps
// its tensors.
TEST(TernaryLinearModule, LoadRefusesAWeightOfAnotherShape) {
  std::stringstream stream;
  torch::save(TernaryLinear(784, 256), stream);
  TernaryLinear small(100, 10);
  const auto before = small->weight.clone();
  EXPECT_TRUE(throws_error_mentioning([&] { torch::load(small, stream); },
                                      {"TernaryLinear", "'weight'", "[256, 784]", "[10, 100]"}));
  EXPECT_TRUE(torch::equal(small->weight, before));
  std::stringstream no_bias;
  torch::save(TernaryLinear(TernaryLinearOptions(4, 3).bias(false)), no_bias);
  TernaryLinear with_bias(4, 3);
  EXPECT_TRUE(throws_error_mentioning([&] { torch::load(with_bias, no_bias); }, {"no parameter 'bias'"}));
  std::stringstream cuda_stream;
  torch::save(bittorch::nn::TernaryLinearCUDA(8, 4), cuda_stream);
  bittorch::nn::TernaryLinearCUDA cuda_layer(8, 5);
  EXPECT_TRUE(throws_error_mentioning([&] { torch::load(cuda_layer, cuda_stream); }, {"TernaryLinearCUDA", "[4, 8]"}));
}

TEST(TernaryLinearModule, QuantizedWeightRefusesNonFiniteWeights) {
  TernaryLinear layer(5, 3);
  {
    torch::NoGradGuard no_grad;
    layer->weight[2][1] = std::nanf("");
  }
  EXPECT_TRUE(throws_error_mentioning([&] { layer->get_quantized_weight(); },
                                      {"bittorch::ternarize", "weight", "non-finite", "nan", "[2, 1]"}));
}

}  // namespace
