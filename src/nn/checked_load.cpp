#include "nn/checked_load.h"

namespace bittorch::nn {

void load_checking_shapes(torch::nn::Module& module, torch::serialize::InputArchive& archive, const char* layer) {
  const auto check = [&](const torch::OrderedDict<std::string, at::Tensor>& tensors, bool is_buffer) {
    for (const auto& item : tensors) {
      at::Tensor stored;
      TORCH_CHECK(archive.try_read(item.key(), stored, is_buffer), layer, ": the archive holds no ",
                  is_buffer ? "buffer" : "parameter", " '", item.key(), "'");
      TORCH_CHECK(stored.sizes() == item.value().sizes(), layer, ": the stored '", item.key(), "' has shape ",
                  stored.sizes(), ", but this layer's options give ", item.value().sizes(),
                  " (was it saved from a layer of another size?)");
    }
  };
  check(module.named_parameters(/*recurse=*/false), /*is_buffer=*/false);
  check(module.named_buffers(/*recurse=*/false), /*is_buffer=*/true);
  module.torch::nn::Module::load(archive);
}

}  // namespace bittorch::nn
