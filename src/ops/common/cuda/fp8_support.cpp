// cuBLASLt is asked the question at::_scaled_mm will put to it: the same matrices (cuBLAS's
// column-major view of out = rows @ codes^T: A = the codes, transposed; B = the rows; D the
// output, [out_features, rows]), 32-bit compute, per-row scales for both (their pointers set:
// without them cuBLASLt refuses the description), fast accumulation, the bias epilogue, and
// the workspace LibTorch gives cuBLASLt. No algorithm means no FP8 product for that shape (on an
// H100 and an H200: few rows of 11008 features); the caller (eight_bit_product) then asks
// again for rows padded with zeros, and without the bias epilogue. On the H200 its answers
// agreed with _scaled_mm's own success or failure on every shape we compared (docs/results.md).

#include "ops/common/cuda/fp8_support.h"

#include "ops/common/cuda/device.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDADataType.h>
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

namespace bittorch::ops::cuda {
namespace {

// Owns one cuBLASLt descriptor; `ok` is false once any call failed.
struct LtQuery {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  bool ok = true;

  void check(cublasStatus_t status) { ok = ok && status == CUBLAS_STATUS_SUCCESS; }
  template <typename T>
  void set(cublasLtMatmulDescAttributes_t attribute, const T& value) {
    if (ok) check(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
  }
  ~LtQuery() {
    if (preference != nullptr) cublasLtMatmulPreferenceDestroy(preference);
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

bool ask_cublaslt(int64_t rows, int64_t in_features, int64_t out_features, at::ScalarType out_dtype,
                  bool bias_epilogue) {
  LtQuery q;
  q.check(cublasLtMatmulDescCreate(&q.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  q.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  q.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  q.set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F);
  q.set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F);
  // Only their presence matters to the heuristic; no product runs here.
  const at::Tensor scales = at::ones({out_features + rows}, at::TensorOptions(at::kCUDA).dtype(at::kFloat));
  q.set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(scales.data_ptr<float>()));
  q.set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(scales.data_ptr<float>() + out_features));
  q.set(CUBLASLT_MATMUL_DESC_FAST_ACCUM, int8_t{1});
  const cudaDataType_t out_type = at::cuda::ScalarTypeToCudaDataType(out_dtype);
  if (bias_epilogue) {
    q.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    q.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, out_type);
  }
  if (q.ok) q.check(cublasLtMatrixLayoutCreate(&q.a, CUDA_R_8F_E4M3, in_features, out_features, in_features));
  if (q.ok) q.check(cublasLtMatrixLayoutCreate(&q.b, CUDA_R_8F_E4M3, in_features, rows, in_features));
  if (q.ok) q.check(cublasLtMatrixLayoutCreate(&q.d, out_type, out_features, rows, out_features));
  if (q.ok) q.check(cublasLtMatmulPreferenceCreate(&q.preference));
  const uint64_t workspace = at::cuda::getCUDABlasLtWorkspaceSize();
  if (q.ok) {
    q.check(cublasLtMatmulPreferenceSetAttribute(q.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                 sizeof(workspace)));
  }
  if (!q.ok) return false;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const auto status = cublasLtMatmulAlgoGetHeuristic(at::cuda::getCurrentCUDABlasLtHandle(), q.desc, q.a, q.b, q.d, q.d,
                                                     q.preference, 1, &result, &found);
  return status == CUBLAS_STATUS_SUCCESS && found > 0;
}

}  // namespace

bool fp8_product_available(int64_t rows, int64_t in_features, int64_t out_features, at::ScalarType out_dtype,
                           bool bias_epilogue) {
  const auto device = at::cuda::current_device();
  if (!has_fp8_tensor_cores(device)) return false;
  using Key = std::tuple<c10::DeviceIndex, int64_t, int64_t, int64_t, at::ScalarType, bool>;
  static std::mutex mutex;
  static std::map<Key, bool> answers;
  const Key key{device, rows, in_features, out_features, out_dtype, bias_epilogue};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto found = answers.find(key);
    if (found != answers.end()) return found->second;
  }
  const bool available = ask_cublaslt(rows, in_features, out_features, out_dtype, bias_epilogue);
  const std::lock_guard<std::mutex> lock(mutex);
  answers[key] = available;
  return available;
}

}  // namespace bittorch::ops::cuda
