#include <bittorch/quant/checks.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <vector>

namespace bittorch::quant {

void check_finite(const char* who, const char* name, const at::Tensor& tensor) {
  if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  const at::Tensor non_finite = at::isfinite(tensor).logical_not_().reshape({-1});
  const int64_t count = non_finite.sum().item<int64_t>();
  if (count == 0) return;
  int64_t flat = non_finite.nonzero()[0][0].item<int64_t>();
  const double value = tensor.reshape({-1})[flat].item<double>();
  std::vector<int64_t> index(static_cast<size_t>(tensor.dim()));
  for (int64_t d = tensor.dim() - 1; d >= 0; --d) {
    index[d] = flat % tensor.size(d);
    flat /= tensor.size(d);
  }
  TORCH_CHECK(false, who, ": the ", name, " holds ", count, " non-finite value", count == 1 ? "" : "s", " (the first, ",
              value, ", at ", c10::IntArrayRef(index), ")");
}

}  // namespace bittorch::quant
