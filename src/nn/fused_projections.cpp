#include <bittorch/nn/fused_projections.h>

#include <bittorch/nn/modules/transformer.h>

namespace bittorch::nn {

int64_t fuse_projections(torch::nn::Module& model) {
  const auto fuse = [](torch::nn::Module& module) {
    auto* holder = dynamic_cast<ProjectionHolder*>(&module);
    return holder != nullptr ? holder->fuse_projection_groups() : 0;
  };
  int64_t joined = fuse(model);  // the model itself: modules(true) needs it held by a shared_ptr
  for (const auto& module : model.modules(/*include_self=*/false)) joined += fuse(*module);
  return joined;
}

}  // namespace bittorch::nn
