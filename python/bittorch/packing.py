"""The 2-bit packed format of the kernels (docs/packed-format.md; C++: bittorch::quant::pack_ternary)."""
import torch

CODES_PER_WORD = 16


def packed_words(in_features: int) -> int:
    return (in_features + CODES_PER_WORD - 1) // CODES_PER_WORD


def pack_ternary(codes: torch.Tensor) -> torch.Tensor:
    """int32 [out, ceil(in / 16)] from codes [out, in] in {-1, 0, +1} (any dtype): code k of a
    row in bits 2 (k % 16) and 2 (k % 16) + 1 of word k / 16, as its two's-complement low bits
    (00 = 0, 01 = +1, 11 = -1); the last word padded with zero codes."""
    if codes.dim() != 2:
        raise ValueError(f"bittorch.pack_ternary: expected codes [out_features, in_features], not {tuple(codes.shape)}")
    integer = codes.to(torch.int64)
    # Meta tensors hold no values to check: the shapes alone are computed.
    valid = (integer >= -1) & (integer <= 1) & (integer.to(codes.dtype) == codes)
    if codes.device.type != "meta" and not torch.all(valid):
        raise ValueError("bittorch.pack_ternary: codes must be -1, 0 or +1")
    out_features, in_features = codes.shape
    words = packed_words(in_features)
    fields = torch.zeros(out_features, words * CODES_PER_WORD, dtype=torch.int64, device=codes.device)
    fields[:, :in_features] = integer & 3
    shifts = 2 * torch.arange(CODES_PER_WORD, dtype=torch.int64, device=codes.device)
    unsigned = (fields.view(out_features, words, CODES_PER_WORD) << shifts).sum(-1)
    return torch.where(unsigned >= 2**31, unsigned - 2**32, unsigned).to(torch.int32)


def unpack_ternary(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """int8 codes [out, in_features] from the packed words (the inverse of pack_ternary)."""
    if packed.dim() != 2 or packed.dtype != torch.int32 or packed.shape[1] != packed_words(in_features):
        raise ValueError(f"bittorch.unpack_ternary: expected int32 [out_features, {packed_words(in_features)}], "
                         f"not {packed.dtype} {tuple(packed.shape)}")
    shifts = 2 * torch.arange(CODES_PER_WORD, dtype=torch.int64, device=packed.device)
    fields = (packed.to(torch.int64).unsqueeze(-1) >> shifts) & 3
    codes = torch.where(fields == 3, -1, fields).reshape(packed.shape[0], -1)
    if torch.any(fields == 2) or torch.any(codes[:, in_features:] != 0):
        raise ValueError("bittorch.unpack_ternary: corrupted codes (the field 10, or nonzero padding)")
    return codes[:, :in_features].to(torch.int8)
