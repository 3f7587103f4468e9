// The wgmma variant's GEMMs (wgmma.cuh) for 16-bit rows and a float16 or bfloat16 output: one
// file of its own, so that the instantiations compile in parallel.

#include "ops/packed_ternary_linear/cuda/wgmma.cuh"

namespace bittorch::ops::cuda::wgmma {

template void product<cutlass::half_t, cutlass::half_t>(const PackedProduct&);
template void product<cutlass::bfloat16_t, cutlass::bfloat16_t>(const PackedProduct&);

}  // namespace bittorch::ops::cuda::wgmma
