"""Ternary layers: bittorch.nn.TernaryLinear (and TernaryLinearCUDA), bittorch.nn.functional."""
from bittorch.nn import functional
from bittorch.nn.modules import TernaryLinear, TernaryLinearCUDA

__all__ = ["TernaryLinear", "TernaryLinearCUDA", "functional"]
