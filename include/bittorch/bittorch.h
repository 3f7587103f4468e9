#pragma once

// Umbrella header: everything a BitTorch user needs.
#include <bittorch/io/files.h>
#include <bittorch/io/hf_bitnet.h>
#include <bittorch/io/packed_model.h>
#include <bittorch/io/packed_transformer.h>
#include <bittorch/io/safetensors.h>
#include <bittorch/io/tokenizer.h>
#include <bittorch/nn/decoder.h>
#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/functional/transformer.h>
#include <bittorch/nn/generation.h>
#include <bittorch/nn/module_tree.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/nn/modules/transformer.h>
#include <bittorch/nn/options/packed_ternary_linear.h>
#include <bittorch/nn/options/ternary_linear.h>
#include <bittorch/nn/options/transformer.h>
#include <bittorch/nn/packed_numbers.h>
#include <bittorch/nn/quantized_weight_cache.h>
#include <bittorch/ops.h>
#include <bittorch/quant/checks.h>
#include <bittorch/quant/config.h>
#include <bittorch/quant/formats.h>
#include <bittorch/quant/packing.h>
#include <bittorch/version.h>
