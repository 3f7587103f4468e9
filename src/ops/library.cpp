// The bittorch:: operator namespace. Each op defines its schemas in a fragment beside its
// typed entry (src/ops/<op>/<op>.cpp) and registers one implementation per dispatch key in the
// files named after it (<op>_cpu.cpp, <op>_cuda.cpp, <op>_meta.cpp, <op>_autograd.cpp,
// <op>_autocast.cpp), as torchvision's csrc/ops does.

#include <torch/library.h>

TORCH_LIBRARY(bittorch, m) {
  static_cast<void>(m);
}
