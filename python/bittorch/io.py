"""Packed model files, the C++ library's format (docs/packed-format.md; C++: bittorch::save_packed,
bittorch::load_packed): one format for both languages. Writes version 3; reads versions 2 and 3."""
import math
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path

import torch

from bittorch.nn.modules import TernaryLinear
from bittorch.nn.packed import PackedTernaryLinear
from bittorch.nn.transformer import TransformerLM, transformer_options
from bittorch.packing import pack_ternary, packed_words, unpack_ternary
from bittorch.quant import SCALE_MODES, QuantConfig

MAGIC = b"BTPACK\r\n"
VERSION = 3
MAX_MODULES, MAX_PATH, MAX_NUMBERS, MAX_ARRAYS, MAX_FEATURES = 65536, 4096, 64, 8, 1 << 24

# Module kinds (src/io/packed_file_format.h).
PACKED, RELU, SEQUENTIAL, MODULE, LINEAR, EMBEDDING, LAYER_NORM, GELU, SILU, TANH, SIGMOID, DROPOUT, RMS_NORM = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
_ACTIVATIONS = {RELU: torch.nn.ReLU, SILU: torch.nn.SiLU, TANH: torch.nn.Tanh, SIGMOID: torch.nn.Sigmoid}
# Array dtypes of the full-precision arrays.
_DTYPES = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16}


class PackedFileError(ValueError):
    """A file that is not a packed model this library can load (says which file and module)."""


# ---- 1.6-bit codes: five codes per byte, sum over i of (code_i + 1) * 3^i ----------------------

_POWERS = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int64)


def pack_trits(codes: torch.Tensor) -> bytes:
    digits = codes.reshape(-1).to(torch.int64).cpu() + 1
    padded = torch.ones(math.ceil(digits.numel() / 5) * 5, dtype=torch.int64)
    padded[:digits.numel()] = digits
    return bytes((padded.view(-1, 5) * _POWERS).sum(1).to(torch.uint8).tolist())


def _codes_of_bytes() -> torch.Tensor:
    """int8 [256, 5]: the five codes of each byte value (rows above 242 are never used)."""
    values = torch.arange(256, dtype=torch.int64).clamp_max(242)
    return ((values.unsqueeze(1) // _POWERS) % 3 - 1).to(torch.int8)


_CODES_OF_BYTES = _codes_of_bytes()
# Weights decoded at a time while loading: the intermediates of a layer stay small.
_CHUNK_WEIGHTS = 1 << 18


def _packed_from_trits(data, out_features: int, in_features: int) -> torch.Tensor:
    """The 2-bit matrix (int32 [out, ceil(in / 16)]) of the file's codes, decoded a few rows at
    a time, so that loading takes about the memory of the file and the model, as the C++
    loader does."""
    numel = out_features * in_features
    if len(data) != math.ceil(numel / 5):
        raise ValueError(f"{len(data)} bytes of codes, expected {math.ceil(numel / 5)}")
    packed = torch.empty(out_features, packed_words(in_features), dtype=torch.int32)
    rows = max(1, _CHUNK_WEIGHTS // in_features)
    for first in range(0, out_features, rows):
        last = min(out_features, first + rows)
        begin, end = first * in_features, last * in_features  # the chunk's codes, flat
        raw = torch.frombuffer(bytearray(data[begin // 5:(end + 4) // 5]), dtype=torch.uint8)
        if torch.any(raw > 242):
            raise ValueError("corrupted codes (a byte above 242)")
        codes = _CODES_OF_BYTES[raw.to(torch.int64)].reshape(-1)
        if last == out_features and torch.any(codes[end - begin // 5 * 5:] != 0):
            raise ValueError("corrupted codes (nonzero padding)")
        offset = begin - begin // 5 * 5
        packed[first:last] = pack_ternary(codes[offset:offset + end - begin].view(last - first, in_features))
    return packed


# ---- writing -----------------------------------------------------------------------------------

def _floats(tensor: torch.Tensor, dtype: torch.dtype) -> bytes:
    values = tensor.detach().to("cpu", dtype).contiguous()
    return values.view(torch.uint8).numpy().tobytes()


def _record(module, path, dtype):
    """(kind, array dtype code, integers, reals, arrays) of one module."""
    code = {v: k for k, v in _DTYPES.items()}[dtype]
    if isinstance(module, TernaryLinear):
        module = PackedTernaryLinear.from_ternary(module)
    if isinstance(module, PackedTernaryLinear):
        c = module.config
        for name, tensor in (("scale", module.scale), ("bias", module.bias)):
            if tensor is not None and not torch.isfinite(tensor).all():
                raise ValueError(f"bittorch.save_packed: layer {path!r}: its {name} holds NaN or Inf")
        codes = unpack_ternary(module.packed.cpu(), module.in_features)
        arrays = [pack_trits(codes), _floats(module.scale, torch.float32)]
        if module.bias is not None:
            arrays.append(_floats(module.bias, torch.float32))
        ints = [module.in_features, module.out_features, int(module.bias is not None), c.activation_bits,
                int(c.per_channel), SCALE_MODES.index(c.scale_mode)]
        return PACKED, 0, ints, [c.threshold_factor], arrays
    kind = type(module)
    if kind is torch.nn.Linear:
        arrays = [_floats(module.weight, dtype)] + ([] if module.bias is None else [_floats(module.bias, dtype)])
        return LINEAR, code, [module.in_features, module.out_features, int(module.bias is not None)], [], arrays
    if kind is torch.nn.Embedding:
        if module.max_norm is not None:
            raise ValueError(f"bittorch.save_packed: embedding {path!r} has max_norm, which a file cannot hold")
        padding = -1 if module.padding_idx is None else module.padding_idx
        return EMBEDDING, code, [module.num_embeddings, module.embedding_dim, padding], [], [
            _floats(module.weight, dtype)]
    if kind is torch.nn.LayerNorm:
        affine = module.elementwise_affine
        if affine and module.bias is None:
            raise ValueError(f"bittorch.save_packed: layer norm {path!r} has a weight and no bias; a file holds both")
        arrays = [_floats(module.weight, dtype), _floats(module.bias, dtype)] if affine else []
        return LAYER_NORM, code, [int(affine), *module.normalized_shape], [module.eps], arrays
    if kind is torch.nn.RMSNorm:
        if len(module.normalized_shape) != 1 or not module.elementwise_affine or module.eps is None:
            raise ValueError(f"bittorch.save_packed: RMSNorm {path!r}: a file holds one dimension, a weight and "
                             "an explicit eps")
        return RMS_NORM, code, [module.normalized_shape[0]], [module.eps], [_floats(module.weight, dtype)]
    if kind is torch.nn.GELU:
        return GELU, code, [int(module.approximate == "tanh")], [], []
    if kind is torch.nn.Dropout:
        return DROPOUT, code, [], [module.p], []
    for activation_kind, activation in _ACTIVATIONS.items():
        if kind is activation:
            return activation_kind, code, [], [], []
    if kind is torch.nn.Sequential:
        return SEQUENTIAL, code, [], [], []
    if list(module.named_parameters(recurse=False)) or list(module.named_buffers(recurse=False)):
        raise ValueError(f"bittorch.save_packed: module {path!r} ({kind.__name__}) has parameters or buffers of its "
                         "own, which a file cannot hold")
    return MODULE, code, [], [], []


def _writable_target(path, who) -> Path:
    """The file writing `path` replaces (a symbolic link followed to its target), checked as
    bittorch::io::check_writable_path checks it."""
    if str(path) == "":
        raise ValueError(f"{who}: the output path is empty")
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() and path.exists() else path
    if target.exists() and not target.is_file():
        mode = target.stat().st_mode
        kind = ("a directory" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ValueError(f"{who}: '{path}' is {kind}; give the path of a file to write")
    directory = target.parent
    if not directory.is_dir():
        raise ValueError(f"{who}: the directory '{directory}' of '{path}' does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{who}: cannot write to the directory '{directory}' of '{path}'")
    return target


def save_packed(model: torch.nn.Module, path, full_precision_dtype: torch.dtype = torch.float32) -> None:
    """Writes `model`'s tree to `path` in the C++ library's format (version 3): ternary layers
    at 1.6 bits per weight (a TernaryLinear is packed on the way), full-precision layers in
    full_precision_dtype (float32, float16 or bfloat16), containers as such. Written to a
    temporary file beside `path`, then renamed: a reader never sees half a file. As the C++
    writer, it follows a symbolic link (its target is replaced) and refuses, with a ValueError
    naming `path`, a directory, a device or FIFO, and a directory that does not exist or cannot
    be written."""
    path = _writable_target(path, "bittorch.save_packed")
    if full_precision_dtype not in _DTYPES.values():
        raise ValueError(f"bittorch.save_packed: full_precision_dtype must be float32, float16 or bfloat16, "
                         f"not {full_precision_dtype}")
    out = bytearray(MAGIC + struct.pack("<II", VERSION, 0))
    count = 0
    for name, module in model.named_modules():  # parents before children, the root first
        kind, dtype_code, ints, reals, arrays = _record(module, name, full_precision_dtype)
        encoded = name.encode()
        out += struct.pack("<I", len(encoded)) + encoded + struct.pack("<BB", kind, dtype_code)
        out += struct.pack("<I", len(ints)) + struct.pack(f"<{len(ints)}q", *ints)
        out += struct.pack("<I", len(reals)) + struct.pack(f"<{len(reals)}d", *reals)
        out += struct.pack("<I", len(arrays))
        for array in arrays:
            out += struct.pack("<Q", len(array)) + array
        count += 1
    out[12:16] = struct.pack("<I", count)
    out += struct.pack("<I", zlib.crc32(out))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(out)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---- reading -----------------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.offset, self.where = data, 0, where

    def take(self, size: int, what: str) -> bytes:
        if size > len(self.data) - self.offset:
            raise PackedFileError(f"{self.where}: truncated: {what} needs {size} bytes, "
                                  f"{len(self.data) - self.offset} left")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _float_array(data: bytes, dtype_code: int, shape, what: str) -> torch.Tensor:
    dtype = _DTYPES[dtype_code]
    expected = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    if len(data) != expected:
        raise ValueError(f"its {what} has {len(data)} bytes, expected {expected}")
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape).to(torch.float32)


def _finite(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"a non-finite {what}")
    return tensor


def _features(value: int, what: str) -> int:
    if not 1 <= value <= MAX_FEATURES:
        raise ValueError(f"invalid {what} {value}")
    return value


def _expect(ints, reals, arrays, n_ints, n_reals, n_arrays, kind):
    if (len(ints), len(reals), len(arrays)) != (n_ints, n_reals, n_arrays):
        raise ValueError(f"{kind} record with {len(ints)} integers, {len(reals)} reals and {len(arrays)} arrays "
                         f"(expected {n_ints}, {n_reals} and {n_arrays})")


def _build(kind, dtype_code, ints, reals, arrays):
    if kind == PACKED:
        if len(ints) != 6 or ints[2] not in (0, 1) or ints[5] not in (0, 1):
            raise ValueError("invalid PackedTernaryLinear integers")
        in_features, out_features = _features(ints[0], "in_features"), _features(ints[1], "out_features")
        _expect(ints, reals, arrays, 6, 1, 3 if ints[2] else 2, "PackedTernaryLinear")
        config = QuantConfig(reals[0], bool(ints[4]), SCALE_MODES[ints[5]], ints[3])
        layer = PackedTernaryLinear(in_features, out_features, bool(ints[2]), config)
        layer.packed.copy_(_packed_from_trits(arrays[0], out_features, in_features))
        layer.scale.copy_(_finite(_float_array(arrays[1], 0, [out_features], "scale"), "scale"))
        if ints[2]:
            layer.bias.copy_(_finite(_float_array(arrays[2], 0, [out_features], "bias"), "bias"))
        return layer
    if kind in _ACTIVATIONS:
        _expect(ints, reals, arrays, 0, 0, 0, _ACTIVATIONS[kind].__name__)
        return _ACTIVATIONS[kind]()
    if kind == SEQUENTIAL:
        _expect(ints, reals, arrays, 0, 0, 0, "Sequential")
        return torch.nn.Sequential()
    if kind == LINEAR:
        if len(ints) != 3:
            raise ValueError("invalid Linear integers")
        in_features, out_features = _features(ints[0], "in_features"), _features(ints[1], "out_features")
        _expect(ints, reals, arrays, 3, 0, 2 if ints[2] else 1, "Linear")
        layer = torch.nn.Linear(in_features, out_features, bias=bool(ints[2]))
        with torch.no_grad():
            layer.weight.copy_(_float_array(arrays[0], dtype_code, [out_features, in_features], "weight"))
            if ints[2]:
                layer.bias.copy_(_float_array(arrays[1], dtype_code, [out_features], "bias"))
        return layer
    if kind == EMBEDDING:
        _expect(ints, reals, arrays, 3, 0, 1, "Embedding")
        count, dim = _features(ints[0], "num_embeddings"), _features(ints[1], "embedding_dim")
        if not -1 <= ints[2] < count:
            raise ValueError(f"invalid padding_idx {ints[2]}")
        layer = torch.nn.Embedding(count, dim, padding_idx=None if ints[2] < 0 else ints[2])
        with torch.no_grad():
            layer.weight.copy_(_float_array(arrays[0], dtype_code, [count, dim], "weight"))
        return layer
    if kind == LAYER_NORM:
        if len(ints) < 2 or ints[0] not in (0, 1):
            raise ValueError("LayerNorm record with invalid integers")
        shape = [_features(d, "normalized dimension") for d in ints[1:]]
        _expect(ints, reals, arrays, len(ints), 1, 2 if ints[0] else 0, "LayerNorm")
        if not reals[0] > 0:
            raise ValueError(f"invalid eps {reals[0]}")
        layer = torch.nn.LayerNorm(shape, eps=reals[0], elementwise_affine=bool(ints[0]))
        if ints[0]:
            with torch.no_grad():
                layer.weight.copy_(_float_array(arrays[0], dtype_code, shape, "weight"))
                layer.bias.copy_(_float_array(arrays[1], dtype_code, shape, "bias"))
        return layer
    if kind == RMS_NORM:
        _expect(ints, reals, arrays, 1, 1, 1, "RMSNorm")
        features = _features(ints[0], "features")
        if not reals[0] > 0:
            raise ValueError(f"invalid eps {reals[0]}")
        layer = torch.nn.RMSNorm(features, eps=reals[0])
        with torch.no_grad():
            layer.weight.copy_(_float_array(arrays[0], dtype_code, [features], "weight"))
        return layer
    if kind == GELU:
        _expect(ints, reals, arrays, 1, 0, 0, "GELU")
        return torch.nn.GELU(approximate="tanh" if ints[0] else "none")
    if kind == DROPOUT:
        _expect(ints, reals, arrays, 0, 1, 0, "Dropout")
        if not 0 <= reals[0] <= 1:
            raise ValueError(f"invalid p {reals[0]}")
        return torch.nn.Dropout(reals[0])
    if kind == MODULE:
        raise ValueError("a module of your own: its forward is code and cannot be rebuilt from a file "
                         "(the C++ library's load_packed_into fills a model you build)")
    raise ValueError(f"unknown module kind {kind}")


def _check_transformer(modules, where):
    """Every module the TransformerLM's options imply is in the file, of its size."""
    o = modules[""].options
    head_size, hidden = o["width"] // o["heads"], o["mlp_hidden"] or (
        o["mlp_ratio"] * o["width"] if o["mlp"] != "swiglu" else (2 * o["mlp_ratio"] * o["width"] // 3 + 7) // 8 * 8)
    kv_width = o["kv_heads"] * head_size
    expected = {"embedding": (torch.nn.Embedding, o["width"], o["vocab_size"]), "norm": (torch.nn.RMSNorm, o["width"])}
    if not o["tied_embeddings"]:
        expected["head"] = ((torch.nn.Linear,), o["width"], o["vocab_size"])
    for i in range(o["layers"]):
        block = f"blocks.{i}"
        expected[f"{block}.attention_norm"] = expected[f"{block}.mlp_norm"] = (torch.nn.RMSNorm, o["width"])
        for name, fan_in, fan_out in (("q", o["width"], o["width"]), ("k", o["width"], kv_width),
                                      ("v", o["width"], kv_width), ("o", o["width"], o["width"]),
                                      ("up", o["width"], hidden), ("down", hidden, o["width"])) + (
                                          (("gate", o["width"], hidden),) if o["mlp"] != "squared_relu" else ()):
            part = "attention" if name in "qkvo" else "mlp"
            expected[f"{block}.{part}.{name}"] = ((torch.nn.Linear, PackedTernaryLinear), fan_in, fan_out)
        if o["sub_norms"]:
            expected[f"{block}.attention.sub_norm"] = (torch.nn.RMSNorm, o["width"])
            expected[f"{block}.mlp.sub_norm"] = (torch.nn.RMSNorm, hidden)
    for path, (kinds, *sizes) in expected.items():
        module = modules.get(path)
        if not isinstance(module, kinds):
            raise PackedFileError(f"{where}: the TransformerLM its root describes needs module {path!r}, which the "
                                  f"file {'lacks' if module is None else 'holds as a ' + type(module).__name__}")
        if isinstance(module, torch.nn.RMSNorm):
            actual = [module.normalized_shape[0]]
        elif isinstance(module, torch.nn.Embedding):
            actual = [module.embedding_dim, module.num_embeddings]
        else:
            actual = [module.in_features, module.out_features]
        if actual != sizes:
            raise PackedFileError(f"{where}: module {path!r} has sizes {actual}, the TransformerLM its root "
                                  f"describes {sizes}")


def load_packed(path) -> torch.nn.Module:
    """The module tree a packed model file holds (a C++ bittorch::save_packed file, or one
    save_packed wrote), in eval mode, on the CPU. Raises PackedFileError (a ValueError) naming
    the file, and the module where one is at fault, for anything but a whole valid file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise PackedFileError(f"{path}: cannot read: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise PackedFileError(f"{path}: not a regular file")
    data = path.read_bytes()
    where = str(path)
    reader = _Reader(data, where)
    if reader.take(len(MAGIC), "the magic") != MAGIC:
        raise PackedFileError(f"{where}: not a packed model file (no BTPACK magic)")
    (version,) = reader.unpack("I", "the version")
    if version > VERSION:
        raise PackedFileError(f"{where}: format version {version} is newer than this library reads ({VERSION})")
    if version not in (2, 3):
        raise PackedFileError(f"{where}: format version {version}: this package reads versions 2 and 3 "
                              "(the C++ library reads version 1 too)")
    if len(data) < reader.offset + 8:
        raise PackedFileError(f"{where}: truncated: {len(data)} bytes")
    view = memoryview(data)  # the records' arrays are views of the file's bytes, never copies of it
    checksum_ok = struct.unpack("<I", view[-4:])[0] == zlib.crc32(view[:-4])
    reader.data = view[:-4]
    modules = {}
    try:
        (count,) = reader.unpack("I", "the module count")
        if not 1 <= count <= MAX_MODULES:
            raise PackedFileError(f"{where}: invalid module count {count}")
        for _ in range(count):
            (length,) = reader.unpack("I", "a path length")
            if length > MAX_PATH:
                raise PackedFileError(f"{where}: a module path of {length} bytes")
            name = bytes(reader.take(length, "a module path")).decode("utf-8", "replace")
            (kind,) = reader.unpack("B", f"module {name!r}'s kind")
            # Version 2 has no array dtype byte: every array is float32.
            (dtype_code,) = reader.unpack("B", f"module {name!r}'s array dtype") if version == 3 else (0,)
            if dtype_code not in _DTYPES:
                raise PackedFileError(f"{where}: module {name!r}: invalid array dtype {dtype_code}")
            numbers = []
            for fmt, what in (("q", "integers"), ("d", "reals")):
                (n,) = reader.unpack("I", f"module {name!r}'s {what} count")
                if n > MAX_NUMBERS:
                    raise PackedFileError(f"{where}: module {name!r}: {n} {what}")
                numbers.append(list(reader.unpack(f"{n}{fmt}", f"module {name!r}'s {what}")))
            (n_arrays,) = reader.unpack("I", f"module {name!r}'s array count")
            if n_arrays > MAX_ARRAYS:
                raise PackedFileError(f"{where}: module {name!r}: {n_arrays} arrays")
            arrays = []
            for _ in range(n_arrays):
                (size,) = reader.unpack("Q", f"module {name!r}'s array length")
                arrays.append(reader.take(size, f"module {name!r}'s array"))
            if not checksum_ok:
                continue  # parse on to tell truncation from corruption, build nothing
            try:
                if kind == MODULE and not name and numbers[0]:  # a language model's root record
                    module = TransformerLM(transformer_options(*numbers))
                elif kind == MODULE and isinstance(modules.get(""), TransformerLM):  # its blocks and parts
                    _expect(numbers[0], numbers[1], arrays, 0, 0, 0, "a TransformerLM's container")
                    module = torch.nn.Module()
                else:
                    module = _build(kind, dtype_code, numbers[0], numbers[1], arrays)
            except ValueError as error:
                raise PackedFileError(f"{where}: module {name!r}: {error}") from error
            parent, _, child = name.rpartition(".")
            if name and parent not in modules:
                raise PackedFileError(f"{where}: module {name!r} comes before its parent")
            if name in modules or (not name and modules):
                raise PackedFileError(f"{where}: module {name!r} appears twice")
            if name:
                modules[parent].add_module(child, module)
            modules[name] = module
        if reader.offset != len(reader.data):
            raise PackedFileError(f"{where}: {len(reader.data) - reader.offset} bytes after the last module")
    except PackedFileError:
        if checksum_ok:
            raise
        raise PackedFileError(f"{where}: truncated (its fields run past its end)") from None
    if not checksum_ok:
        raise PackedFileError(f"{where}: corrupted (checksum mismatch)")
    if "" not in modules:
        raise PackedFileError(f"{where}: no root module")
    if isinstance(modules[""], TransformerLM):
        _check_transformer(modules, where)
    return modules[""].eval()
