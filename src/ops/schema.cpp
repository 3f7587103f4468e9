// Schemas of the bittorch:: operators. Implementations are registered per dispatch key in
// cpu/, cuda/, meta/ and autograd/, as torchvision does for its ops.

#include <torch/library.h>

TORCH_LIBRARY(bittorch, m) {
  // Ternary codes {-1, 0, 1} in the weight's dtype and the per-channel ([out]) or global
  // ([1]) scale. Not differentiable.
  m.def(
      "ternarize(Tensor weight, float threshold_factor=0.05, bool per_channel=True, "
      "str scale_mode=\"max\") -> (Tensor codes, Tensor scale)");
  // Per-row 8-bit codes of an input ("int8" or "float8_e4m3") and their float32 scales
  // (input's shape with the last dimension 1). Not differentiable.
  m.def("quantize_activations(Tensor input, str format) -> (Tensor values, Tensor scale)");
  // y = x @ (codes * scale)^T + bias, differentiable through the straight-through estimator.
  // With activation_format "int8" or "float8_e4m3", x is first quantized per row to that
  // format (straight-through as well).
  m.def(
      "ternary_linear(Tensor input, Tensor weight, Tensor? bias=None, "
      "float threshold_factor=0.05, bool per_channel=True, str scale_mode=\"max\", "
      "str activation_format=\"none\") -> Tensor");
  // The pieces the autograd implementation is made of. `operand` is codes * scale in the
  // input's dtype, the matrix the backward multiplies grad_output with. With 8-bit
  // activations the forward does not need it and writes it only when keep_operand is set
  // (otherwise it is undefined); without, it is always returned.
  m.def(
      "_ternary_linear_forward(Tensor input, Tensor weight, Tensor? bias, "
      "float threshold_factor, bool per_channel, str scale_mode, str activation_format, "
      "bool keep_operand) -> (Tensor output, Tensor operand, Tensor scale)");
  // Inference on packed weights (docs/packed-format.md): y = (x @ codes^T) * scale + bias
  // with codes unpacked from `packed` (int32 [out, ceil(in_features / 16)]), scale float32
  // [out] or [1]; activation_format as for ternary_linear. Not differentiable.
  m.def(
      "packed_ternary_linear(Tensor input, Tensor packed, Tensor scale, Tensor? bias, "
      "int in_features, str activation_format=\"none\") -> Tensor");
  m.def(
      "_ternary_linear_backward(Tensor grad_output, Tensor input, Tensor operand, Tensor scale, "
      "bool[3] output_mask) -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
}
