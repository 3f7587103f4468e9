// Trains a TernaryLinear through the installed package, with the training toolkit
// (BitTorch::train), and prints the output shape.
#include <bittorch/bittorch.h>
#include <bittorch/train.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  bittorch::nn::TernaryLinear layer(bittorch::nn::TernaryLinearOptions(8, 4));
  torch::optim::SGD optimizer(layer->parameters(), 0.1);
  const auto input = torch::randn({2, 8});
  bittorch::train::Trainer trainer(
      *layer, optimizer, bittorch::train::TrainerOptions(2, 1).progress(bittorch::train::ProgressStyle::None));
  bittorch::train::TrainerHooks hooks;
  hooks.step = [&](const bittorch::train::StepContext&) {
    return bittorch::train::StepOutput{layer(input).square().mean(), 2};
  };
  const auto& history = trainer.fit(hooks);
  const auto output = layer(input);
  std::cout << "BitTorch " << BITTORCH_VERSION << " consumer output " << output.sizes() << ", " << history.size()
            << " epochs trained\n";
  return output.sizes() == torch::IntArrayRef({2, 4}) && history.size() == 2 ? 0 : 1;
}
