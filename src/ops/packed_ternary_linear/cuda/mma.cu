// The mma variant of packed_ternary_linear (variants.h): up to 8 rows of 16-bit or 8-bit
// activations on tensor cores, optionally after a prologue in each block: a residual add and
// RMSNorm of the rows (add_rms_norm_packed_linear's one kernel) and/or their quantization to 8
// bits (packed_ternary_linear's 8-bit activations without a kernel of their own).

#include "ops/common/cuda/dependent_launch.cuh"
#include "ops/packed_ternary_linear/cuda/variants.h"
#include "ops/quantize_activations/activation_quantizer.cuh"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <type_traits>

#include "ops/packed_ternary_linear/cuda/mma_fragments.cuh"

namespace bittorch::ops::cuda {
namespace {

// The mma kernel's prologue, on rows of row_t (16-bit): the residual add and RMSNorm of
// PackedProduct::norm_residual, or (residual null) none; then, where the product's input in_t
// is 8-bit, the quantization of PackedProduct::prologue_format. vector_loads: input,
// residual, weight and sum are 16-byte aligned with rows of whole 16-byte vectors (features a
// multiple of 8). max_code: the 8-bit format's largest value.
template <typename row_t>
struct PrologueArgs {
  const row_t* input = nullptr;
  const row_t* residual = nullptr;
  const row_t* weight = nullptr;
  row_t* sum = nullptr;
  int64_t features = 0;
  float eps = 0;
  bool vector_loads = false;
  float max_code = 0;
};

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffU, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max_keeping_nan(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    value = max_keeping_nan(value, __shfl_xor_sync(0xffffffffU, value, offset));
  }
  return value;
}

// What each block of the mma kernel computes into shared memory before its product. With a
// residual: normed[m, :padded] = add_rms_norm's output for rows m of args.input and
// args.residual (zero past args.features), with add_rms_norm's arithmetic (the sum rounded to
// row_t, float32 squares of it, output = row_t(sum * rstd * weight)); block 0 also writes the
// sum. With 8-bit products (in_t int8 or e4m3): the normed rows, or without a residual the
// input rows, quantized into quantized[m, :padded] and row_scale[m] as quantize_activations
// does (absmax per row). Elements go kWidth at a time (8: 16-byte accesses, so that a decode
// row is one load per thread; else 1). Each thread's first pack of the norm weight is loaded
// before the block waits for the kernel before it (preload_weight: the weight is a constant).
template <typename row_t, typename in_t, int kThreads, int kWidth>
struct RowPrologue {
  using RowPack = Pack<row_t, kWidth>;
  static constexpr bool kQuantized = !std::is_same_v<row_t, in_t>;
  RowPack first_weight;  // the weight's pack threadIdx.x

  __device__ __forceinline__ void preload_weight(const PrologueArgs<row_t>& args) {
    const int64_t packs = args.features / kWidth;
    if (args.residual != nullptr && threadIdx.x < packs) {
      first_weight = reinterpret_cast<const RowPack*>(args.weight)[threadIdx.x];
    }
  }

  __device__ __forceinline__ void stage(const PrologueArgs<row_t>& args, int64_t rows, int64_t padded, row_t* normed,
                                        in_t* quantized, float* row_scale) const {
    __shared__ float warp_partial[kThreads / 32][kMaxMmaVariantRows];
    __shared__ float row_rstd[kMaxMmaVariantRows];
    const int64_t features = args.features, packs = features / kWidth, pad = padded - features;
    const bool add_norm = args.residual != nullptr, writes_sum = add_norm && blockIdx.x == 0;
    for (int64_t i = threadIdx.x; i < rows * pad; i += kThreads) {
      const int64_t at = i / pad * padded + features + i % pad;
      if constexpr (kQuantized) {
        reinterpret_cast<uint8_t*>(quantized)[at] = 0;  // int8's and e4m3's zero
      } else {
        normed[at] = static_cast<row_t>(0.0F);
      }
    }
    // Each row's warp partials: of the squares of the sums, or (quantizing the input) of |x|.
    for (int64_t m = 0; m < rows; ++m) {
      const auto* x_row = reinterpret_cast<const RowPack*>(args.input + m * features);
      float partial = 0.0F;
      for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
        const RowPack a = x_row[p];
        if (!add_norm) {
#pragma unroll
          for (int j = 0; j < kWidth; ++j) partial = max_keeping_nan(partial, fabsf(static_cast<float>(a.v[j])));
          continue;
        }
        const RowPack b = reinterpret_cast<const RowPack*>(args.residual + m * features)[p];
        RowPack sum;
#pragma unroll
        for (int j = 0; j < kWidth; ++j) {
          sum.v[j] = static_cast<row_t>(static_cast<float>(a.v[j]) + static_cast<float>(b.v[j]));
          partial += static_cast<float>(sum.v[j]) * static_cast<float>(sum.v[j]);
        }
        reinterpret_cast<RowPack*>(normed + m * padded)[p] = sum;
        if (writes_sum) reinterpret_cast<RowPack*>(args.sum + m * features)[p] = sum;
      }
      partial = add_norm ? warp_sum(partial) : warp_max_keeping_nan(partial);
      if (threadIdx.x % 32 == 0) warp_partial[threadIdx.x / 32][m] = partial;
    }
    if (add_norm) {
      __syncthreads();
      if (threadIdx.x < rows) {
        float total = 0.0F;
#pragma unroll
        for (int w = 0; w < kThreads / 32; ++w) total += warp_partial[w][threadIdx.x];
        row_rstd[threadIdx.x] = 1.0F / sqrtf(total / static_cast<float>(features) + args.eps);
      }
      __syncthreads();
      for (int64_t m = 0; m < rows; ++m) {
        const float r = row_rstd[m];
        auto* row = reinterpret_cast<RowPack*>(normed + m * padded);
        float absmax = 0.0F;
        for (int64_t p = threadIdx.x; p < packs; p += kThreads) {  // each thread rewrites what it wrote
          const RowPack w = p == threadIdx.x ? first_weight : reinterpret_cast<const RowPack*>(args.weight)[p];
          RowPack out = row[p];
#pragma unroll
          for (int j = 0; j < kWidth; ++j) {
            out.v[j] = static_cast<row_t>(static_cast<float>(out.v[j]) * r * static_cast<float>(w.v[j]));
            absmax = max_keeping_nan(absmax, fabsf(static_cast<float>(out.v[j])));
          }
          row[p] = out;
        }
        if constexpr (kQuantized) {
          absmax = warp_max_keeping_nan(absmax);
          if (threadIdx.x % 32 == 0) warp_partial[threadIdx.x / 32][m] = absmax;
        }
      }
    }
    if constexpr (kQuantized) {
      // Each row's scale from its absmax, then each thread quantizes the packs it read or normed.
      const ActivationQuantizer<row_t> quantizer{std::is_same_v<in_t, int8_t>, args.max_code, row_scale,
                                                 reinterpret_cast<uint8_t*>(quantized)};
      __syncthreads();
      if (threadIdx.x < rows) {
        float total = 0.0F;
#pragma unroll
        for (int w = 0; w < kThreads / 32; ++w) total = max_keeping_nan(total, warp_partial[w][threadIdx.x]);
        quantizer.finish_row(threadIdx.x, total, features);
      }
      __syncthreads();
      for (int64_t m = 0; m < rows; ++m) {
        const float s = row_scale[m];
        const auto* row = reinterpret_cast<const RowPack*>(add_norm ? normed + m * padded : args.input + m * features);
        for (int64_t p = threadIdx.x; p < packs; p += kThreads) quantizer.write(m * padded + p * kWidth, row[p], s);
      }
    }
    __syncthreads();
  }
};

// Up to 8 rows: block = one mma tile of output features, warps interleaved over the chunks of K.
// At most 96 registers for one tile per warp: five blocks per multiprocessor (100 gives four).
// The block's codes are constants of a decode step: their loads start before the wait for the
// kernel before (whose output x is). row_t (not void): the block's RowPrologue computes the
// rows it multiplies from args.input into shared memory (dynamic: with a residual, rows x
// words * 16 elements of row_t; then, where in_t is 8-bit, as many of in_t); x is unused.
template <typename in_t, typename out_t, int kWarps, int kStages, int kTiles, typename row_t>
__global__ void __launch_bounds__(kWarps * 32, kTiles == 1 ? 5 : 4)
    packed_mma_kernel(const in_t* __restrict__ x, int64_t x_stride, int64_t rows, const uint32_t* __restrict__ packed,
                      int64_t words, int64_t out_features, bool vector_loads, const float* __restrict__ scale,
                      bool per_channel, const float* __restrict__ row_scale, const out_t* __restrict__ bias,
                      bool squared_relu, out_t* __restrict__ out, PrologueArgs<row_t> args) {
  constexpr bool kPrologue = !std::is_void_v<row_t>;
  constexpr bool kQuantizes = kPrologue && !std::is_same_v<in_t, row_t>;
  using Product = WarpProduct<in_t, 1, kStages, kTiles, kPrologue>;
  __shared__ float partial[kWarps][kTiles * 4][32];
  __shared__ float quantized_row_scale[kQuantizes ? kMaxMmaVariantRows : 1];
  extern __shared__ uint4 prologue_rows[];  // 16-byte aligned, as the product's loads need
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n0 = int64_t{blockIdx.x} * Product::kFeatures, chunks = (words + kWordsPerChunk - 1) / kWordsPerChunk;
  const int64_t block_features = out_features - n0 < Product::kFeatures ? out_features - n0 : Product::kFeatures;
  // The prologue's rows: the normed ones (with a residual), then the quantized ones.
  [[maybe_unused]] auto* normed = reinterpret_cast<std::conditional_t<kPrologue, row_t, in_t>*>(prologue_rows);
  in_t* staged = nullptr;  // the rows the product multiplies, where the prologue computes them
  if constexpr (kQuantizes) {
    staged = reinterpret_cast<in_t*>(args.residual != nullptr ? normed + rows * x_stride : normed);
  } else if constexpr (kPrologue) {
    staged = normed;
  }
  // Before the wait: the codes of each warp's first stage on their way to registers (all of
  // them at a decode step's widths), the block's codes to L2 where there are more.
  Product product(kPrologue ? staged : x, x_stride, rows, 0, packed, words, out_features, n0);
  product.load_stage(warp, chunks, kWarps, words, vector_loads);
  if (chunks > kWarps * kStages) prefetch_to_l2(packed + n0 * words, block_features * words * 4);
  if constexpr (kPrologue) {
    const auto run_prologue = [&](auto width) {
      RowPrologue<row_t, in_t, kWarps * 32, decltype(width)::value> prologue;
      prologue.preload_weight(args);
      wait_for_prior_grid_and_allow_next();
      prologue.stage(args, rows, x_stride, normed, staged, quantized_row_scale);
    };
    if (args.vector_loads) {
      run_prologue(std::integral_constant<int, 16 / sizeof(row_t)>{});
    } else {
      run_prologue(std::integral_constant<int, 1>{});
    }
    if constexpr (kQuantizes) row_scale = quantized_row_scale;
  } else {
    wait_for_prior_grid_and_allow_next();
  }
  product.run(warp, chunks, kWarps, words, vector_loads, nullptr, /*first_stage_loaded=*/true);
  product.remove_offset();
#pragma unroll
  for (int r = 0; r < kTiles; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][4 * r + i][lane] = product.acc[r][0][i];
  }
  __syncthreads();
  for (int index = threadIdx.x; index < kTiles * 4 * 32; index += kWarps * 32) {
    const int r = index / 128, i = index / 32 % 4, owner = index % 32;
    const int feature = Product::feature_of(16 * r + owner / 4 + 8 * (i / 2));
    const int64_t n = n0 + feature, m = 2 * (owner % 4) + i % 2;
    if (feature < 0 || n >= out_features || m >= rows) continue;
    float sum = 0.0F;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][4 * r + i][owner];
    out[m * out_features + n] = scaled_output(sum, m, n, row_scale, scale, per_channel, bias, squared_relu);
  }
}

bool has_prologue(const PackedProduct& p) {
  return p.norm_residual.defined() || p.prologue_format != quant::ActivationFormat::None;
}

// One launch of packed_mma_kernel over p's output features: row_t void, the product of p.x;
// else of the rows the prologue computes from p.x (p.norm_residual, p.prologue_format).
template <typename in_t, typename out_t, int kTiles, int kStages, typename row_t>
void launch_small_batch_product(const PackedProduct& p, int64_t rows, const float* row_scale, const out_t* bias) {
  const int64_t out_features = p.packed.size(0), words = p.packed.size(1);
  constexpr int kWarps = 4;
  constexpr int kFeatures = tile_features<in_t, kTiles>();
  const dim3 grid(static_cast<unsigned>((out_features + kFeatures - 1) / kFeatures));
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto* codes = reinterpret_cast<const uint32_t*>(p.packed.data_ptr<int32_t>());
  const float* scale = p.scale.data_ptr<float>();
  auto* out = p.out.data_ptr<out_t>();
  const auto kernel = packed_mma_kernel<in_t, out_t, kWarps, kStages, kTiles, row_t>;
  if constexpr (std::is_void_v<row_t>) {
    launch_dependent(kernel, grid, dim3(kWarps * 32), 0, stream, reinterpret_cast<const in_t*>(p.x.data_ptr()),
                     p.x.size(1), rows, codes, words, out_features, words % 4 == 0, scale, p.scale.size(0) > 1,
                     row_scale, bias, p.squared_relu, out, PrologueArgs<row_t>{});
  } else {
    const auto pointer = [](const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; };
    PrologueArgs<row_t> args;
    args.input = reinterpret_cast<const row_t*>(p.x.data_ptr());
    args.residual = reinterpret_cast<const row_t*>(pointer(p.norm_residual));
    args.weight = reinterpret_cast<const row_t*>(pointer(p.norm_weight));
    args.sum = reinterpret_cast<row_t*>(pointer(p.norm_sum));
    args.features = p.x.size(1);
    args.eps = static_cast<float>(p.norm_eps);
    args.max_code = max_activation_code(p.prologue_format);
    const auto aligned = [](const at::Tensor& t) {
      return !t.defined() || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
    };
    args.vector_loads = args.features % 8 == 0 && aligned(p.x) && aligned(p.norm_residual) && aligned(p.norm_weight) &&
                        aligned(p.norm_sum);
    // The staged rows are padded to whole words, as the product reads them.
    const int64_t padded = words * kWordsPerChunk;
    const auto bytes = prologue_bytes(rows, words, sizeof(row_t), p.norm_residual.defined(), p.prologue_format);
    launch_dependent(kernel, grid, dim3(kWarps * 32), static_cast<size_t>(bytes), stream,
                     static_cast<const in_t*>(nullptr), padded, rows, codes, words, out_features, words % 4 == 0, scale,
                     p.scale.size(0) > 1, nullptr, bias, p.squared_relu, out, args);
  }
}

// The tile configuration by the layer's size, then the launch.
template <typename in_t, typename out_t, typename row_t = void>
void small_batch_product(const PackedProduct& p, const float* row_scale, const out_t* bias) {
  const int64_t rows = p.x.size(0), out_features = p.packed.size(0);
  // Two tiles per warp share each input fragment, but halve the blocks: only where there
  // are still about six blocks per multiprocessor.
  const int64_t multiprocessors = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  if (out_features >= 6 * multiprocessors * tile_features<in_t, 2>()) {
    launch_small_batch_product<in_t, out_t, 2, 2, row_t>(p, rows, row_scale, bias);
  } else {
    launch_small_batch_product<in_t, out_t, 1, 3, row_t>(p, rows, row_scale, bias);
  }
}

// The product after the prologue: in_t the 16-bit rows' own type, or the 8-bit format they
// are quantized to.
template <typename row_t>
void product_after_prologue(const PackedProduct& p) {
  const auto* bias = p.bias.defined() ? p.bias.data_ptr<row_t>() : nullptr;
  switch (p.prologue_format) {
    case quant::ActivationFormat::None:
      return small_batch_product<row_t, row_t, row_t>(p, nullptr, bias);
    case quant::ActivationFormat::Int8:
      return small_batch_product<int8_t, row_t, row_t>(p, nullptr, bias);
    case quant::ActivationFormat::Float8E4M3:
      return small_batch_product<c10::Float8_e4m3fn, row_t, row_t>(p, nullptr, bias);
  }
  TORCH_CHECK(false, "bittorch::packed_ternary_linear: unknown activation format for the mma prologue");
}

}  // namespace

void mma_product(const PackedProduct& p) {
  const int64_t rows = p.x.size(0);
  TORCH_CHECK(rows <= kMaxMmaVariantRows, "bittorch::packed_ternary_linear: kernel \"mma\" takes at most ",
              kMaxMmaVariantRows, " rows, not ", rows);
  if (has_prologue(p)) {
    TORCH_CHECK(prologue_bytes(rows, p.packed.size(1), p.x.element_size(), p.norm_residual.defined(),
                               p.prologue_format) <= kMaxPrologueBytes,
                "bittorch::packed_ternary_linear: the mma prologue's rows exceed ", kMaxPrologueBytes, " bytes");
    switch (p.x.scalar_type()) {
      case at::kHalf:
        return product_after_prologue<c10::Half>(p);
      case at::kBFloat16:
        return product_after_prologue<c10::BFloat16>(p);
      default:
        TORCH_CHECK(false, "bittorch::packed_ternary_linear: the mma prologue takes 16-bit rows, not ",
                    p.x.scalar_type());
    }
  }
  const float* row_scale = p.row_scale.defined() ? p.row_scale.data_ptr<float>() : nullptr;
  dispatch_packed_product(p, "bittorch_packed_mma", [&](auto in_tag, auto out_tag, const auto* bias) {
    small_batch_product<decltype(in_tag), decltype(out_tag)>(p, row_scale, bias);
  });
}

}  // namespace bittorch::ops::cuda
