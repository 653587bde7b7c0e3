"""Weight masks as torch parametrizations, shared by pruning (which sets them) and quantization (which keeps them).

A pruned conv/linear carries `WeightMask` (a fixed 0/1 buffer) or a pruning-time parametrization (e.g. the
N:M SR-STE mask of `nnchip.prune`) on its `weight`: `layer.weight` is then the masked weight, the trainable
tensor is `layer.parametrizations.weight.original`. `quantize()` moves the parametrizations onto the Q-layer,
so the weight quantizer sees exact zeros; a weight grid that contains 0 (every symmetric two's-complement
grid) maps them to the integer 0, and the lowering and the export therefore hold exact zeros too.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """Parametrization w ↦ w ⊙ mask with a fixed 0/1 `mask` buffer of the weight's shape."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.float32).clone())

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask.to(weight.dtype)

    def current_mask(self, weight: Tensor) -> Tensor:
        del weight  # a fixed mask does not depend on the weight
        return self.mask


def is_masked(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight")


def raw_weight(layer: nn.Module) -> Tensor:
    """The trainable weight: the parametrization's original when masked, else `layer.weight`."""
    if is_masked(layer):
        return layer.parametrizations.weight.original  # type: ignore[union-attr, return-value]
    return layer.weight  # type: ignore[return-value]


def set_mask(layer: nn.Module, mask: Tensor) -> None:
    """Replace any weight parametrization of `layer` by a fixed WeightMask(mask); pruned entries become zero."""
    weight = raw_weight(layer).detach().clone()
    if is_masked(layer):
        remove_weight_parametrization(layer, leave_parametrized=False)
    with torch.no_grad():
        layer.weight.copy_(weight * mask.to(weight.dtype))
    parametrize.register_parametrization(layer, "weight", WeightMask(mask))


@torch.no_grad()
def weight_mask(layer: nn.Module) -> Tensor | None:
    """The current 0/1 mask of a masked layer (the product of its parametrizations' masks), else None."""
    if not is_masked(layer):
        return None
    weight = raw_weight(layer)
    mask = torch.ones_like(weight)
    for p in layer.parametrizations.weight:  # type: ignore[union-attr]
        mask = mask * p.current_mask(weight)
    return mask


def copy_weight_parametrizations(source: nn.Module, target: nn.Module) -> None:
    """Give `target` (same weight shape) copies of `source`'s weight parametrizations and raw weight."""
    if not is_masked(source):
        return
    with torch.no_grad():
        target.weight.copy_(raw_weight(source).detach())
    for p in source.parametrizations.weight:  # type: ignore[union-attr]
        parametrize.register_parametrization(target, "weight", copy.deepcopy(p))


def strip_masks(model: nn.Module) -> nn.Module:
    """Bake every weight parametrization into a plain weight (masked entries stay zero), in place."""
    for module in list(model.modules()):
        if is_masked(module):
            remove_weight_parametrization(module, leave_parametrized=True)
    return model


def remove_weight_parametrization(module: nn.Module, *, leave_parametrized: bool) -> None:
    """`parametrize.remove_parametrizations(module, "weight", ...)` on a private copy of the module's class.

    torch keeps the `weight` property on a class made for the parametrized module, and `copy.deepcopy` shares
    that class between the original and the copy; removing the parametrization deletes the property from the
    class, which would leave every other module of that class (the original model) without a weight.
    """
    cls = type(module)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=leave_parametrized)
