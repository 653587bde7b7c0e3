"""Nested multi-level weight masks: one weight tensor, L sparsity levels s_0 < s_1 < … < s_{L−1}, one active.

Each weight carries `keep` ∈ {0, …, L}: the number of levels at which it is kept, so

    M_l = [keep > l]        ⇒   M_0 ⊇ M_1 ⊇ … ⊇ M_{L−1}    (nested by construction)

`NestedMask` is a weight parametrization like `nnchip.core.mask.WeightMask` (so capture, BatchNorm folding,
`quantize()` and the lowering treat it alike) whose `current_mask` is the mask of the active level.
`set_sparsity_level(model, l)` switches every nested layer of a float model or a QModel to level l.
The active level is a plain attribute (an inference choice, not a parameter): it is not in the state dict.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from nnchip.core.errors import ConfigError
from nnchip.core.mask import is_masked, raw_weight, remove_weight_parametrization


class NestedMask(nn.Module):
    """Parametrization w ↦ w ⊙ [keep > level]; `keep` (int8 buffer, the weight's shape), `levels` the sparsities."""

    def __init__(self, keep: Tensor, levels: tuple[float, ...], level: int = 0) -> None:
        super().__init__()
        self.register_buffer("keep", keep.detach().to(torch.int8).clone())
        self.levels = tuple(float(s) for s in levels)
        self.level = level

    def forward(self, weight: Tensor) -> Tensor:
        return weight * (self.keep > self.level).to(weight.dtype)

    def current_mask(self, weight: Tensor) -> Tensor:
        del weight  # the mask depends on the level only
        return self.level_mask(self.level)

    def level_mask(self, level: int) -> Tensor:
        """0/1 float mask of level `level`."""
        return (self.keep > level).to(torch.float32)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, level={self.level}"


def nested_mask(layer: nn.Module) -> NestedMask | None:
    """The layer's NestedMask parametrization, or None."""
    if not is_masked(layer):
        return None
    found = [p for p in layer.parametrizations.weight if isinstance(p, NestedMask)]  # type: ignore[union-attr]
    return found[0] if found else None


def set_nested_mask(layer: nn.Module, keep: Tensor, levels: tuple[float, ...], level: int = 0) -> None:
    """Replace any weight parametrization of `layer` by NestedMask(keep); weights kept at no level become 0."""
    weight = raw_weight(layer).detach().clone()
    if is_masked(layer):
        remove_weight_parametrization(layer, leave_parametrized=False)
    with torch.no_grad():
        layer.weight.copy_(weight * (keep > 0).to(weight.dtype))
    parametrize.register_parametrization(layer, "weight", NestedMask(keep, levels, level))


def sparsity_levels(model: nn.Module) -> tuple[float, ...]:
    """The levels of the model's nested masks (all layers share them), () when it has none."""
    for module in model.modules():
        if (mask := nested_mask(module)) is not None:
            return mask.levels
    return ()


def set_sparsity_level(model: nn.Module, level: int) -> nn.Module:
    """Make level `level` (0 = densest) active in every nested layer of `model` (in place); returns `model`."""
    levels = sparsity_levels(model)
    if not levels:
        raise ConfigError(f"{type(model).__name__} has no nested sparsity masks (prune with prune.levels)")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(levels):
        raise ConfigError(f"sparsity level must be an integer in 0..{len(levels) - 1} (levels {list(levels)}), "
                          f"got {level!r}")
    for module in model.modules():
        if (mask := nested_mask(module)) is not None:
            mask.level = level
    return model
