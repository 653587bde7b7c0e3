"""The registry of pruning structures and what a structure receives.

A structure is a function `(model, config, sparsity, example_inputs) -> nn.Module` registered by name with
`@register_structure(name)`: it prunes `model` (a private copy that `prune()` made) to `sparsity` and returns
it — the same object when it only sets masks, a smaller model when it removes channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor, nn

from nnchip.core.registry import Registry

if TYPE_CHECKING:
    from nnchip.prune.config import PruneConfig

StructureFn = Callable[[nn.Module, "PruneConfig", float, "tuple[Tensor, ...] | None"], nn.Module]
PRUNE_STRUCTURES: Registry[StructureFn] = Registry("pruning structure")


def register_structure(name: str) -> Callable[[StructureFn], StructureFn]:
    return PRUNE_STRUCTURES.register(name)


def prunable_layers(model: nn.Module, config: PruneConfig) -> list[tuple[str, nn.Module]]:
    """Conv2d/Linear layers (Q-layers too) in module order, minus `exclude` and, if set, the first and last."""
    layers = [(path, m) for path, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if config.skip_first_last and len(layers) > 2:
        layers = layers[1:-1]
    return [(path, m) for path, m in layers if path not in config.exclude]
