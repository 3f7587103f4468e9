"""BitTorch: ternary (1.58-bit) layers for PyTorch, on the C++ library's dispatcher ops.

Importing the package loads libbittorch, whose operators are then torch.ops.bittorch.*.
"""
from bittorch._library import library_path, library_version, load_library

load_library()
__version__ = library_version()

from bittorch import nn, quant  # noqa: E402  (the ops must be loaded first)
from bittorch.convert import convert_to_ternary, pack  # noqa: E402
from bittorch.io import PackedFileError, load_packed, save_packed  # noqa: E402
from bittorch.packing import pack_ternary, unpack_ternary  # noqa: E402
from bittorch.quant import QuantConfig  # noqa: E402

__all__ = ["PackedFileError", "QuantConfig", "convert_to_ternary", "library_path", "load_library", "load_packed", "nn",
           "pack", "pack_ternary", "quant", "save_packed", "unpack_ternary"]
