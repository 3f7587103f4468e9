#pragma once

// Typed C++ entry points to the bittorch:: dispatcher ops. Calling through the dispatcher picks
// the Autograd, Autocast, CPU, CUDA or Meta implementation. Arguments are spelled as the
// schemas spell them: scale_mode "max" | "absmean", activation_format "none" | "int8" |
// "float8_e4m3" (quant::to_string).

#include <bittorch/ops/add_rms_norm.h>
#include <bittorch/ops/add_rms_norm_packed_linear.h>
#include <bittorch/ops/decode_attention.h>
#include <bittorch/ops/linear_cross_entropy.h>
#include <bittorch/ops/packed_ternary_linear.h>
#include <bittorch/ops/quantize_activations.h>
#include <bittorch/ops/rotary_embedding.h>
#include <bittorch/ops/sample_tokens.h>
#include <bittorch/ops/squared_relu.h>
#include <bittorch/ops/squared_relu_mlp.h>
#include <bittorch/ops/ternarize.h>
#include <bittorch/ops/ternary_linear.h>
