#pragma once

// Umbrella header: everything a BitTorch user needs.
#include <bittorch/io/files.h>
#include <bittorch/nn/functional/ternary_linear.h>
#include <bittorch/nn/modules/packed_ternary_linear.h>
#include <bittorch/nn/modules/ternary_linear.h>
#include <bittorch/nn/options/packed_ternary_linear.h>
#include <bittorch/nn/options/ternary_linear.h>
#include <bittorch/ops.h>
#include <bittorch/quant/activations.h>
#include <bittorch/quant/packing.h>
#include <bittorch/quant/ternarize.h>
#include <bittorch/version.h>
