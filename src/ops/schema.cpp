// Schemas of the bittorch:: operators. Implementations are registered per dispatch key in
// cpu/, cuda/, meta/ and autograd/, as torchvision does for its ops.

#include <torch/library.h>

TORCH_LIBRARY(bittorch, m) {
  // Ternary codes {-1, 0, 1} in the weight's dtype and the per-channel ([out]) or global
  // ([1]) scale. Not differentiable.
  m.def(
      "ternarize(Tensor weight, float threshold_factor=0.05, bool per_channel=True, "
      "str scale_mode=\"max\") -> (Tensor codes, Tensor scale)");
  // y = x @ (codes * scale)^T + bias, differentiable through the straight-through estimator.
  m.def(
      "ternary_linear(Tensor input, Tensor weight, Tensor? bias=None, "
      "float threshold_factor=0.05, bool per_channel=True, str scale_mode=\"max\") -> Tensor");
  // The pieces the autograd implementation is made of. `operand` is codes * scale in the
  // input's dtype, the matrix the products use; the backward reuses it.
  m.def(
      "_ternary_linear_forward(Tensor input, Tensor weight, Tensor? bias, "
      "float threshold_factor, bool per_channel, str scale_mode) "
      "-> (Tensor output, Tensor operand, Tensor scale)");
  m.def(
      "_ternary_linear_backward(Tensor grad_output, Tensor input, Tensor operand, Tensor scale, "
      "bool[3] output_mask) -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
}
