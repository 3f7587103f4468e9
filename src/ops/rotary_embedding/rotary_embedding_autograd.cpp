// Autograd for bittorch::rotary_embedding and rotary_embedding_split: the tables saved; the
// backward rotates the gradients back in one op (for the split, into the joined gradient). The
// tables get no gradient.

#include <bittorch/ops/rotary_embedding.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace bittorch::ops {
namespace {

class RotaryEmbeddingFunction : public torch::autograd::Function<RotaryEmbeddingFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& query,
                                                const at::Tensor& key, const at::Tensor& cos,
                                                const at::Tensor& signed_sin) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({cos, signed_sin});
    auto [rotated_query, rotated_key] = rotary_embedding(query, key, cos, signed_sin);
    return {rotated_query, rotated_key};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    // Gradients of unused outputs arrive as zeros (materialized), of the outputs' layouts.
    const auto saved = ctx->get_saved_variables();
    auto [grad_query, grad_key] = _rotary_embedding_backward(grad_outputs[0], grad_outputs[1], saved[0], saved[1]);
    return {grad_query, grad_key, at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> rotary_embedding_autograd(const at::Tensor& query, const at::Tensor& key,
                                                             const at::Tensor& cos, const at::Tensor& signed_sin) {
  const auto outputs = RotaryEmbeddingFunction::apply(query, key, cos, signed_sin);
  return {outputs[0], outputs[1]};
}

std::tuple<at::Tensor, at::Tensor> backward_autograd(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                                     const at::Tensor& cos, const at::Tensor& signed_sin) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _rotary_embedding_backward(grad_query, grad_key, cos, signed_sin);
}

class RotaryEmbeddingSplitFunction : public torch::autograd::Function<RotaryEmbeddingSplitFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& joined,
                                                int64_t query_heads, const at::Tensor& cos,
                                                const at::Tensor& signed_sin) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({cos, signed_sin});
    auto [query, key, value] = rotary_embedding_split(joined, query_heads, cos, signed_sin);
    return {query, key, value};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    return {_rotary_embedding_split_backward(grad_outputs[0], grad_outputs[1], grad_outputs[2], saved[0], saved[1]),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_autograd(const at::Tensor& joined, int64_t query_heads,
                                                              const at::Tensor& cos, const at::Tensor& signed_sin) {
  const auto outputs = RotaryEmbeddingSplitFunction::apply(joined, query_heads, cos, signed_sin);
  return {outputs[0], outputs[1], outputs[2]};
}

at::Tensor split_backward_autograd(const at::Tensor& grad_query, const at::Tensor& grad_key,
                                   const at::Tensor& grad_value, const at::Tensor& cos, const at::Tensor& signed_sin) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return _rotary_embedding_split_backward(grad_query, grad_key, grad_value, cos, signed_sin);
}

}  // namespace

TORCH_LIBRARY_IMPL(bittorch, Autograd, m) {
  m.impl("rotary_embedding", &rotary_embedding_autograd);
  m.impl("_rotary_embedding_backward", &backward_autograd);
  m.impl("rotary_embedding_split", &split_autograd);
  m.impl("_rotary_embedding_split_backward", &split_backward_autograd);
}

}  // namespace bittorch::ops
