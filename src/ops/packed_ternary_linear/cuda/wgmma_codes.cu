// The packed codes in the wgmma variant's fragment order (wgmma_codes.h), and the copy kept
// per packed tensor.

#include "ops/packed_ternary_linear/cuda/wgmma_codes.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/intrusive_ptr.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace bittorch::ops::cuda {
namespace {

// One thread per 32-bit word of the ordered codes: the 16 elements of word w, each read from
// its (m, k) in the row-major codes (wgmma_codes.h's formula, inverted).
template <int kValues>
__global__ void order_codes_kernel(const uint32_t* __restrict__ packed, int64_t out_features, int64_t words,
                                   uint32_t* __restrict__ ordered) {
  constexpr int kAtomElements = 128 * kValues, kThreadElements = 4 * kValues;
  const int64_t features = fragment_ordered_features(out_features), total = features * words, row_atoms = features / 16;
  for (int64_t w = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; w < total; w += int64_t{gridDim.x} * blockDim.x) {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int64_t element = 16 * w + j, atom = element / kAtomElements;
      const int within = static_cast<int>(element % kAtomElements);
      const int t = within / kThreadElements, value = within % kThreadElements;
      const int64_t m = 16 * (atom % row_atoms) + t / 4 + 8 * ((value / kValues) % 2);
      const int64_t k = 8 * kValues * (atom / row_atoms) + kValues * (t % 4) + value % kValues +
                        4 * kValues * (value / (2 * kValues));
      const uint32_t code = m < out_features ? (packed[m * words + k / 16] >> (2 * (k % 16))) & 3U : 0U;
      word |= code << (2 * j);
    }
    ordered[w] = word;
  }
}

// The ordered codes of `packed` into `ordered` [fragment_ordered_features(out_features), words].
void order_codes_into(const at::Tensor& packed, int values_per_register, at::Tensor& ordered) {
  const int64_t out_features = packed.size(0), words = packed.size(1);
  const int64_t total = fragment_ordered_features(out_features) * words;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads,
                                           int64_t{32} * at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto* source = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  auto* target = reinterpret_cast<uint32_t*>(ordered.data_ptr<int32_t>());
  if (values_per_register == 2) {
    order_codes_kernel<2><<<blocks, threads, 0, stream>>>(source, out_features, words, target);
  } else {
    order_codes_kernel<4><<<blocks, threads, 0, stream>>>(source, out_features, words, target);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor order_codes(const at::Tensor& packed, int values_per_register) {
  at::Tensor ordered = at::empty({fragment_ordered_features(packed.size(0)), packed.size(1)}, packed.options());
  order_codes_into(packed, values_per_register, ordered);
  return ordered;
}

// A kept copy: its source tensor (weakly: the copy goes when the source is gone), the source's
// data, and its version and the stream when the copy was last ordered.
struct OrderedCodes {
  explicit OrderedCodes(const at::Tensor& packed)
      : source(packed.getIntrusivePtr()),
        data(packed.data_ptr()),
        ordered(at::empty({fragment_ordered_features(packed.size(0)), packed.size(1)}, packed.options())) {}
  // Whether `packed` is still this copy's source, with the same memory and shape.
  bool orders(const at::Tensor& packed) const {
    return !source.expired() && data == packed.data_ptr() &&
           ordered.size(0) == fragment_ordered_features(packed.size(0)) && ordered.size(1) == packed.size(1);
  }
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> source;
  const void* data;
  at::Tensor ordered;
  int64_t version = -1;
  cudaStream_t ordered_on = nullptr;
};

struct OrderedCodesCache {
  std::mutex mutex;
  std::map<std::pair<const c10::TensorImpl*, int>, std::unique_ptr<OrderedCodes>> entries;
};

OrderedCodesCache& cache() {
  static auto* instance = new OrderedCodesCache();  // never destroyed: tensors may outlive static destruction
  return *instance;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace

at::Tensor fragment_ordered_codes(const at::Tensor& packed, int values_per_register) {
  TORCH_CHECK(packed.is_cuda() && packed.scalar_type() == at::kInt && packed.dim() == 2 && packed.is_contiguous() &&
                  (values_per_register == 2 || values_per_register == 4) &&
                  packed.size(1) * 16 % (8 * values_per_register) == 0,
              "bittorch::packed_ternary_linear (kernel \"wgmma\"): the codes to order must be contiguous CUDA int32 "
              "[out_features, words] with words * 16 a multiple of ",
              8 * values_per_register);
  const c10::cuda::CUDAGuard guard(packed.device());
  if (packed.is_inference()) return order_codes(packed, values_per_register);
  auto& kept = cache();
  const std::lock_guard<std::mutex> lock(kept.mutex);
  const auto key =
      std::make_pair(static_cast<const c10::TensorImpl*>(packed.unsafeGetTensorImpl()), values_per_register);
  auto found = kept.entries.find(key);
  const bool kept_for_these_codes = found != kept.entries.end() && found->second->orders(packed);
  const at::cuda::CUDAStream stream = at::cuda::getCurrentCUDAStream();
  if (kept_for_these_codes && found->second->version == packed._version()) {
    // Read on another stream: its memory is not reused before that stream's work is done.
    if (stream.stream() != found->second->ordered_on) found->second->ordered.record_stream(stream);
    return found->second->ordered;
  }
  // Inside a capture the ordering kernel runs only at replay: its output is not kept.
  if (capturing(stream)) return order_codes(packed, values_per_register);
  if (!kept_for_these_codes) {
    // A new copy; copies of tensors that are gone are freed first.
    for (auto it = kept.entries.begin(); it != kept.entries.end();) {
      it = it->second->source.expired() ? kept.entries.erase(it) : std::next(it);
    }
    found = kept.entries.insert_or_assign(key, std::make_unique<OrderedCodes>(packed)).first;
  }
  // Ordered (again, after a change in place: into the same memory, which graphs captured earlier
  // read), and complete before it is kept: calls on any stream may read it.
  OrderedCodes& entry = *found->second;
  order_codes_into(packed, values_per_register, entry.ordered);
  at::cuda::stream_synchronize(stream);
  entry.version = packed._version();
  entry.ordered_on = stream.stream();
  return entry.ordered;
}

}  // namespace bittorch::ops::cuda
