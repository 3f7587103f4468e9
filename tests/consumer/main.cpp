// Trains one TernaryLinear step through the installed package and prints the output shape.
#include <bittorch/bittorch.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  bittorch::nn::TernaryLinear layer(bittorch::nn::TernaryLinearOptions(8, 4));
  torch::optim::SGD optimizer(layer->parameters(), 0.1);
  const auto output = layer(torch::randn({2, 8}));
  output.sum().backward();
  optimizer.step();
  std::cout << "BitTorch " << BITTORCH_VERSION << " consumer output " << output.sizes() << "\n";
  return output.sizes() == torch::IntArrayRef({2, 4}) ? 0 : 1;
}
