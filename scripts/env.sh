# Sourced by the scripts: where the pinned LibTorch lives and how CMake finds it.
BITTORCH_TORCH_VERSION="2.11.0"
BITTORCH_SCIKIT_BUILD_CORE_VERSION="0.11.6"
BITTORCH_PYTEST_VERSION="8.4.2"
# CUTLASS's headers (the wheel's include directory; its Python parts are not used).
BITTORCH_CUTLASS_VERSION="4.2.0.0"
# Other projects' implementations the interoperability tests compare against (PyPI, pinned).
BITTORCH_REFERENCE_PACKAGES=(transformers==5.25.0 safetensors==0.8.0 tokenizers==0.23.3 gguf==0.19.0
                             accelerate==1.16.0)
BITTORCH_CACHE="${BITTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bittorch}"
BITTORCH_VENV="${BITTORCH_VENV:-${BITTORCH_CACHE}/venv-torch-${BITTORCH_TORCH_VERSION}}"
BITTORCH_PYTHON="${BITTORCH_VENV}/bin/python"

# CMake prefix of the Torch package inside the virtual environment.
torch_cmake_prefix() {
  "${BITTORCH_PYTHON}" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)'
}
