"""Ternary layers: bittorch.nn.TernaryLinear (and TernaryLinearCUDA), the deployed
PackedTernaryLinear, and bittorch.nn.functional."""
from bittorch.nn import functional
from bittorch.nn.modules import TernaryLinear, TernaryLinearCUDA
from bittorch.nn.packed import PackedTernaryLinear

__all__ = ["PackedTernaryLinear", "TernaryLinear", "TernaryLinearCUDA", "functional"]
