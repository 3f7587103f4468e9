"""Ternary layers: bittorch.nn.TernaryLinear (and TernaryLinearCUDA), the deployed
PackedTernaryLinear, bittorch.nn.functional, and the language model bittorch-lm trains
(TransformerLM, which bittorch.load_packed rebuilds from its file)."""
from bittorch.nn import functional
from bittorch.nn.modules import TernaryLinear, TernaryLinearCUDA
from bittorch.nn.packed import PackedTernaryLinear
from bittorch.nn.transformer import TransformerLM

__all__ = ["PackedTernaryLinear", "TernaryLinear", "TernaryLinearCUDA", "TransformerLM", "functional"]
