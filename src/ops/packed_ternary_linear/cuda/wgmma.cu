// The wgmma variant of packed_ternary_linear (variants.h): which calls it takes, and the
// instantiation of wgmma.cuh's GEMM for the rows' and the output's types.

#include "ops/common/cuda/device.h"
#include "ops/packed_ternary_linear/cuda/wgmma.cuh"

namespace bittorch::ops::cuda {

namespace {

template <class Output>
void product_into(const PackedProduct& p) {
  if (p.x.scalar_type() == at::kFloat8_e4m3fn) {
    wgmma::product<cutlass::float_e4m3_t, Output>(p);
  } else {
    wgmma::product<Output, Output>(p);
  }
}

// What the kernel needs of the operands (variants.h): a 16-bit output, and rows of its dtype or
// e4m3 ones; TMA's 16-byte rows of codes and 16-byte output columns; aligned codes; sm_90a.
bool wgmma_takes(const PackedProduct& p) {
  const at::ScalarType rows = p.x.scalar_type(), output = p.out.scalar_type();
  return (output == at::kHalf || output == at::kBFloat16) && (rows == output || rows == at::kFloat8_e4m3fn) &&
         p.packed.size(1) % 4 == 0 && p.packed.size(0) % 8 == 0 && p.packed.size(0) > 0 &&
         reinterpret_cast<uintptr_t>(p.packed.data_ptr()) % 16 == 0 && runs_sm90a(p.packed.device());
}

}  // namespace

void wgmma_product(const PackedProduct& p) {
  TORCH_CHECK(wgmma_takes(p),
              "bittorch::packed_ternary_linear: kernel \"wgmma\" takes float16 or bfloat16 activations, as they are "
              "or in the float8_e4m3 format, on a compute capability 9.0 GPU, with in_features padded to a multiple "
              "of 64 (packed words a multiple of 4), out_features a multiple of 8 and 16-byte aligned codes");
  if (p.out.scalar_type() == at::kHalf) {
    product_into<cutlass::half_t>(p);
  } else {
    product_into<cutlass::bfloat16_t>(p);
  }
}

}  // namespace bittorch::ops::cuda
