#pragma once

// Argument checks and shape helpers that several ops share; each op's own checks live beside
// its schema (src/ops/<op>/<op>.h), so that every backend of an op rejects the same inputs
// with the same messages.

#include <bittorch/quant/formats.h>

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/string_view.h>

#include <vector>

namespace bittorch::ops {

/// The typed handle of dispatcher op `name` ("bittorch::ternarize"), for the typed entries;
/// `Signature` is the entry's own type (`decltype(ternarize)`), so a signature is written once.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

/// A defined floating-point tensor.
void check_floating(const char* op, const char* name, const at::Tensor& tensor);

/// An input of shape [*, features] (at least 1-D) and floating dtype.
void check_input(const char* op, const at::Tensor& input);

/// 8-bit activations are quantized from float32 arithmetic: a float32, float16 or bfloat16
/// input (float64 is refused rather than silently narrowed).
void check_quantizable_input(const char* op, const at::Tensor& input);

/// The schema spelling of an activation format, parsed.
quant::ActivationFormat parse_activation_format(c10::string_view format);
/// "none" or "float8_e5m2"; anything else is a c10::Error naming the accepted values.
quant::GradientFormat parse_gradient_format(c10::string_view format);

/// The dtype of an 8-bit format's values and codes: int8 or float8_e4m3fn.
at::ScalarType eight_bit_dtype(quant::ActivationFormat format);

/// The dtype scales are kept in: float32 for float16/bfloat16 weights, else the weight's.
at::ScalarType scale_dtype(at::ScalarType weight_dtype);

/// The rows of a linear layer's input [*, features]: the product of all but the last size.
int64_t linear_rows(const at::Tensor& input);

/// The output shape of a linear layer: input's shape with the last dimension replaced.
std::vector<int64_t> linear_output_shape(const at::Tensor& input, int64_t out_features);

}  // namespace bittorch::ops
