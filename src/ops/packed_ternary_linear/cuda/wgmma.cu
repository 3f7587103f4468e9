// The wgmma variant of packed_ternary_linear (variants.h) for Hopper: a CUTLASS 3 mixed-input
// GEMM (wgmma fed by TMA, warp-specialized, persistent with a stream-K schedule) whose A operand
// is the packed codes. The 2-bit format (docs/packed-format.md) is cutlass::int2b_t's (code k of
// a row at bits 2 (k % 16) of word k / 16, two's complement); the GEMM reads a copy of the codes
// in the order of its A fragments (wgmma_codes.h, kept per packed tensor), so that each thread
// loads a k-block's codes in one shared-memory access. TMA brings codes and rows into shared
// memory; the consumer warpgroups widen the codes in registers to the rows' type (CUTLASS's
// int2b -> bf16/fp16/e4m3 converters: a byte permute and a masked XOR a pair of codes, then one
// subtraction, or a byte lookup) and multiply them on wgmma with the rows from shared memory:
// 16-bit rows, or e4m3 ones on the FP8 tensor cores. The problem is transposed (M = output
// features, N = rows), so the codes are the operand that passes through registers; the output
// [rows, out_features] is then D column-major. The epilogue multiplies by each e4m3 row's scale,
// scales each output feature, adds the bias and applies the squared ReLU where asked, in
// float32, and rounds once to the 16-bit output.
// One file: the CUTLASS headers and the first instantiation cost most of its compile time (split
// in two, each half took as long as the whole).

#include "ops/common/cuda/device.h"
#include "ops/common/cuda/sm90_gemm.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/packed_ternary_linear/cuda/wgmma_codes.h"

#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/gemm/kernel/tile_scheduler.hpp>

namespace bittorch::ops::cuda {
namespace {

namespace fusion = cutlass::epilogue::fusion;
using Codes = cutlass::int2b_t;
using Accumulator = float;
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;
constexpr int kCodeAlignment = 128 / 2;  // 16 bytes of codes: what TMA needs

// acc (* row_scale[row] for 8-bit rows) * scale[feature] + bias[feature] in float32 (scale: a
// vector, or one value where the stride's bool is false), then max(y, 0)^2 where asked, rounded
// once to Output.
template <class Output, class TileShape, bool kRowScaled, bool kSquaredRelu>
struct ScaledOutput {
  using RowScale = fusion::Sm90RowBroadcast<0, TileShape, float, float>;
  using Scale = fusion::Sm90ColBroadcast<0, TileShape, float, float, cute::Stride<bool, cute::_0, cute::_0>>;
  using Bias = fusion::Sm90ColBroadcast<0, TileShape, Output, float>;
  using Sums = std::conditional_t<
      kRowScaled,
      fusion::Sm90EVT<fusion::Sm90Compute<cutlass::multiplies, float, float, kRound>, fusion::Sm90AccFetch, RowScale>,
      fusion::Sm90AccFetch>;
  template <class Result>
  using Affine =
      fusion::Sm90EVT<fusion::Sm90Compute<cutlass::homogeneous_multiply_add, Result, float, kRound>, Sums, Scale, Bias>;
  using Callbacks =
      std::conditional_t<kSquaredRelu,
                         fusion::Sm90EVT<fusion::Sm90Compute<sm90::SquaredRelu, Output, float, kRound>, Affine<float>>,
                         Affine<Output>>;
  // The EVT's arguments, in the tree's order.
  static typename Callbacks::Arguments arguments(const float* row_scale, const float* scale, bool per_channel,
                                                 const Output* bias) {
    typename Sums::Arguments sums{};
    if constexpr (kRowScaled) sums = {{}, {row_scale}, {}};
    typename Affine<std::conditional_t<kSquaredRelu, float, Output>>::Arguments affine{
        sums, {scale, 0.0f, {per_channel, {}, {}}}, {bias}, {}};
    if constexpr (kSquaredRelu) {
      return {affine, {}};
    } else {
      return affine;
    }
  }
};

// The layout of the codes in fragment order (wgmma_codes.h) for rows of type Input, as CuTe
// sees it: a block of 16 features x 8v codes (v values of Input in a 32-bit register), each
// thread's 4v values contiguous, blocks tiled along the features first. Given to the
// collective in place of a stride, it makes each thread's shared-memory load of a k-block one
// access (4 byte loads and their reassembly per k-block without it).
template <class Input>
struct FragmentOrder {
  static constexpr int kValues = 4 / sizeof(Input);
  // (feature, code) -> element: feature (8, 2) : (16v, v); code (v, 4, 2) : (1, 4v, 2v).
  using Atom = cute::Layout<
      cute::Shape<cute::Shape<cute::Shape<cute::_8, cute::_2>, cute::_1>,
                  cute::Shape<cute::Shape<cute::Int<kValues>, cute::_4, cute::_2>, cute::_1>>,
      cute::Stride<cute::Stride<cute::Stride<cute::Int<16 * kValues>, cute::Int<kValues>>, cute::_0>,
                   cute::Stride<cute::Stride<cute::_1, cute::Int<4 * kValues>, cute::Int<2 * kValues>>, cute::_0>>>;
  using Layout = decltype(cute::tile_to_shape(
      Atom{}, cute::Layout<cute::Shape<int, int, int>, cute::Stride<int64_t, cute::_1, int64_t>>{}));
  static Layout of(int features, int depth) {
    return cute::tile_to_shape(Atom{}, cute::make_shape(features, depth, 1));
  }
};

// TileRows rows (N) by 128 output features (M) a tile, 128 bytes of rows' K a stage. Input: the
// rows' type (16-bit, or e4m3 with a scale per row); Output: the output's (16-bit).
template <class Input, class Output, int TileRows, bool kSquaredRelu>
struct WgmmaGemm {
  static constexpr bool kRowScaled = sizeof(Input) == 1;
  using TileShape = cute::Shape<cute::_128, cute::Int<TileRows>, cute::Int<128 / sizeof(Input)>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  using Epilogue = ScaledOutput<Output, TileShape, kRowScaled, kSquaredRelu>;
  static constexpr int kInputAlignment = 16 / sizeof(Input);
  static constexpr int kOutputAlignment = 16 / sizeof(Output);
  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, Accumulator, Accumulator, void, cutlass::layout::ColumnMajor,
      kOutputAlignment, Output, cutlass::layout::ColumnMajor, kOutputAlignment,
      cutlass::epilogue::TmaWarpSpecializedCooperative, typename Epilogue::Callbacks>::CollectiveOp;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Codes, typename FragmentOrder<Input>::Layout, kCodeAlignment,
      Input, cutlass::layout::ColumnMajor, kInputAlignment, Accumulator, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, cutlass::gemm::StreamKScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// The epilogue reads the scales and the bias in 16-byte vectors: a view that starts elsewhere
// (a slice of a joined layer's) is copied first.
at::Tensor vector_aligned(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 ? t : t.clone();
}

template <class Input, class Output, int TileRows, bool kSquaredRelu>
void product_of(const PackedProduct& p) {
  using Config = WgmmaGemm<Input, Output, TileRows, kSquaredRelu>;
  using Gemm = typename Config::Gemm;
  using Kernel = typename Gemm::GemmKernel;
  const int features = static_cast<int>(p.packed.size(0));
  const int rows = static_cast<int>(p.x.size(0));
  const int depth = static_cast<int>(p.x.size(1));  // words * 16
  const at::Tensor scale = vector_aligned(p.scale);
  const at::Tensor bias = p.bias.defined() ? vector_aligned(p.bias) : at::Tensor();
  // The codes in fragment order, their features rounded up to a multiple of 16.
  const at::Tensor codes = fragment_ordered_codes(p.packed, FragmentOrder<Input>::kValues);
  typename Gemm::Arguments arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {features, rows, depth, 1},
      {static_cast<const Codes*>(codes.data_ptr()), FragmentOrder<Input>::of(static_cast<int>(codes.size(0)), depth),
       static_cast<const Input*>(p.x.data_ptr()), sm90::packed_stride<typename Kernel::StrideB>(depth)},
      {Config::Epilogue::arguments(p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr,
                                   scale.data_ptr<float>(), scale.size(0) > 1,
                                   bias.defined() ? static_cast<const Output*>(bias.data_ptr()) : nullptr),
       nullptr, sm90::packed_stride<typename Kernel::StrideC>(features), static_cast<Output*>(p.out.data_ptr()),
       sm90::packed_stride<typename Kernel::StrideD>(features)},
      sm90::hardware_info(p.x)};
  sm90::run<Gemm>("bittorch::packed_ternary_linear (kernel \"wgmma\")", arguments, p.x);
}

template <class Input, class Output>
void product(const PackedProduct& p) {
  // 64-row tiles up to 64 rows (wgmma multiplies a tile's padding rows too), 128-row ones
  // beyond. No 32-row tile: up to 64 rows the dispatch takes mma, stream or split_k, and each
  // tile size is four instantiations more to compile.
  if (p.x.size(0) <= 64) {
    p.squared_relu ? product_of<Input, Output, 64, true>(p) : product_of<Input, Output, 64, false>(p);
  } else {
    p.squared_relu ? product_of<Input, Output, 128, true>(p) : product_of<Input, Output, 128, false>(p);
  }
}

template <class Output>
void product_into(const PackedProduct& p) {
  if (p.x.scalar_type() == at::kFloat8_e4m3fn) {
    product<cutlass::float_e4m3_t, Output>(p);
  } else {
    product<Output, Output>(p);
  }
}

}  // namespace

// A 16-bit output, and rows of its dtype or e4m3 ones; TMA's 16-byte rows of codes and 16-byte
// output columns; aligned codes; sm_90a.
bool wgmma_takes(const at::Tensor& packed, at::ScalarType rows, at::ScalarType output) {
  return (output == at::kHalf || output == at::kBFloat16) && (rows == output || rows == at::kFloat8_e4m3fn) &&
         packed.size(1) % 4 == 0 && packed.size(0) % 8 == 0 && packed.size(0) > 0 &&
         reinterpret_cast<uintptr_t>(packed.data_ptr()) % 16 == 0 && runs_sm90a(packed.device());
}

void wgmma_product(const PackedProduct& p) {
  TORCH_CHECK(wgmma_takes(p.packed, p.x.scalar_type(), p.out.scalar_type()),
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
