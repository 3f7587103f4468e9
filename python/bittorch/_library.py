"""Finds and loads libbittorch, which registers the torch.ops.bittorch operators."""
import ctypes
import os
from pathlib import Path

import torch

_LIBRARY_NAME = "libbittorch.so"


def library_path() -> Path:
    """The library this package loads: $BITTORCH_LIBRARY if set (a build tree's library), else
    the one installed inside the package (bittorch/lib/libbittorch.so)."""
    configured = os.environ.get("BITTORCH_LIBRARY")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ImportError(f"bittorch: BITTORCH_LIBRARY={configured} is not a file")
        return path
    path = Path(__file__).resolve().parent / "lib" / _LIBRARY_NAME
    if not path.is_file():
        raise ImportError(f"bittorch: {path} is missing (install the package with pip, or set BITTORCH_LIBRARY "
                          f"to the {_LIBRARY_NAME} of a build tree)")
    return path


def load_library() -> None:
    path = str(library_path())
    if path not in torch.ops.loaded_libraries:
        torch.ops.load_library(path)


def library_version() -> str:
    """The version of the loaded library ("X.Y.Z", C++: bittorch_version())."""
    version = ctypes.CDLL(str(library_path())).bittorch_version
    version.restype = ctypes.c_char_p
    return version().decode()
