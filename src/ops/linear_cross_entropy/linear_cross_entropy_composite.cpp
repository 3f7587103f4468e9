// bittorch::linear_cross_entropy for every device, from ATen ops (CompositeExplicitAutograd):
// per chunk of rows, the logits (a matrix product in the input's dtype), their log-sum-exp and
// target logits in float32 (float64), and with gradients on, softmax minus one-hot at once,
// multiplied back into the gradients of the input (this chunk's rows) and of the weight
// (accumulated over the chunks in float32).

#include "ops/linear_cross_entropy/linear_cross_entropy.h"

#include <bittorch/ops/linear_cross_entropy.h>

#include <ATen/ATen.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

constexpr const char* kOp = "bittorch::linear_cross_entropy";

// Every target is a class or ignore_index (on the CPU; see the check's header).
void check_targets(const at::Tensor& target, int64_t classes, int64_t ignore_index) {
  if (!target.device().is_cpu() || target.numel() == 0) return;
  const auto bad = ((target < 0) | (target >= classes)) & (target != ignore_index);
  if (!bad.any().item<bool>()) return;
  const auto first = bad.reshape(-1).nonzero()[0][0].item<int64_t>();
  TORCH_CHECK(false, kOp, ": target ", target.reshape(-1)[first].item<int64_t>(), " (at flat index ", first,
              ") is not a class in [0, ", classes, ") nor ignore_index ", ignore_index);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& input, const at::Tensor& weight,
                                                       const at::Tensor& target, int64_t ignore_index,
                                                       int64_t chunk_rows, bool compute_grad) {
  check_linear_cross_entropy_args(kOp, input, weight, target, chunk_rows);
  const int64_t features = input.size(-1), classes = weight.size(0);
  check_targets(target, classes, ignore_index);
  const auto x = input.reshape({-1, features});
  const auto t = target.reshape({-1});
  const int64_t rows = x.size(0);
  const auto accumulate = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto valid = t != ignore_index;
  const auto count = valid.sum().to(accumulate);
  auto loss_sum = at::zeros({}, input.options().dtype(accumulate));
  at::Tensor grad_input, grad_weight;
  if (compute_grad) {
    grad_input = at::empty_like(x);
    grad_weight = at::zeros({classes, features}, weight.options().dtype(accumulate));
  }
  const auto weight_t = weight.t();
  const int64_t chunk = linear_cross_entropy_chunk(chunk_rows, rows, classes);
  for (int64_t start = 0; start < rows; start += chunk) {
    const int64_t length = std::min(chunk, rows - start);
    const auto xc = x.narrow(0, start, length);
    const auto valid_c = valid.narrow(0, start, length).unsqueeze(1);
    const auto safe_t = at::where(valid_c.squeeze(1), t.narrow(0, start, length), 0).unsqueeze(1);
    auto logits = at::mm(xc, weight_t).to(accumulate);
    const auto lse = logits.logsumexp(1, /*keepdim=*/true);
    loss_sum += ((lse - logits.gather(1, safe_t)) * valid_c).sum();
    if (!compute_grad) continue;
    // d loss_sum / d logits = softmax - one_hot(target) on valid rows, 0 on ignored ones.
    auto d = logits.sub_(lse).exp_();
    d.scatter_add_(1, safe_t, -valid_c.to(accumulate));
    d.mul_(valid_c);
    const auto d_in = d.to(x.scalar_type());
    grad_input.narrow(0, start, length).copy_(at::mm(d_in, weight));
    grad_weight.add_(at::mm(d_in.t(), xc));
  }
  const auto inverse = count.reciprocal();  // no valid target: inf, and a NaN loss
  auto loss = loss_sum * inverse;
  if (compute_grad) {
    grad_input = grad_input.mul_(inverse.to(grad_input.scalar_type())).view(input.sizes());
    grad_weight = grad_weight.mul_(inverse).to(weight.scalar_type());
  }
  return {loss, grad_input, grad_weight};
}

at::Tensor loss_only(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, int64_t ignore_index,
                     int64_t chunk_rows) {
  return std::get<0>(forward(input, weight, target, ignore_index, chunk_rows, false));
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, CompositeExplicitAutograd, m) {
  m.impl("_linear_cross_entropy_forward", &forward);
  m.impl("linear_cross_entropy", &loss_only);
}

}  // namespace bittorch::ops
