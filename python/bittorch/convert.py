"""Module-tree conversions (C++: bittorch::convert_to_ternary, bittorch::pack)."""
import copy
from typing import Callable, Optional

import torch

from bittorch.nn.modules import TernaryLinear
from bittorch.nn.packed import PackedTernaryLinear
from bittorch.quant import QuantConfig


def convert_to_ternary(model: torch.nn.Module, config: Optional[QuantConfig] = None,
                       filter_fn: Optional[Callable[[str, torch.nn.Module], bool]] = None) -> torch.nn.Module:
    """Replaces, in place, every torch.nn.Linear of `model`'s tree (not the root itself) for
    which filter_fn(qualified_name, module) is true (all if filter_fn is None) by a
    TernaryLinear with the same weight and bias (copied, on the same device and dtype) and the
    settings of `config` (QuantConfig() if None). Returns `model`."""
    config = config or QuantConfig()
    if not isinstance(config, QuantConfig):
        raise TypeError(f"bittorch.convert_to_ternary: config must be a bittorch.QuantConfig, not {type(config)}")
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not torch.nn.Linear or (filter_fn is not None and not filter_fn(name, child)):
                continue
            layer = TernaryLinear(child.in_features, child.out_features, child.bias is not None,
                                  config.threshold_factor, config.per_channel, scale_mode=config.scale_mode,
                                  activation_bits=config.activation_bits, device=child.weight.device,
                                  dtype=child.weight.dtype)
            with torch.no_grad():
                layer.weight.copy_(child.weight)
                if child.bias is not None:
                    layer.bias.copy_(child.bias)
            layer.train(child.training)
            setattr(parent, child_name, layer)
    return model


def pack(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every TernaryLinear (the root too) replaced by the
    PackedTernaryLinear of its quantized weight, in eval mode; `model` is left as it was."""
    if isinstance(model, TernaryLinear):
        return PackedTernaryLinear.from_ternary(model).eval()
    packed = copy.deepcopy(model)
    for parent in list(packed.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, TernaryLinear):
                setattr(parent, child_name, PackedTernaryLinear.from_ternary(child))
    return packed.eval()
