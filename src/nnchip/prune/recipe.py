"""Pruning recipes: a quantization recipe (nnchip.recipes) plus `prune:` and `finetune:` sections.

    model / data / pretrain / seed / out   as in `nnchip quantize` recipes
    prune:     PruneConfig fields (structure, sparsity, n, m, scope, schedule, steps, ...)
    finetune:  {epochs, lr, batch_size, weight_decay, max_steps} — training with the masks (optional;
               without it the pruning is one-shot, no training)
    quant / ptq / qat:   optional; when `quant` is present the pruned model is quantized, lowered, exported
               (with sparse formats) and verified
Unknown keys raise ConfigError naming their path (`prune.sparsty`, `finetune.lrr`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnchip.core.errors import ConfigError
from nnchip.prune.config import PruneConfig
from nnchip.recipes import Recipe, read_recipe_yaml, recipe_from_dict


@dataclass(frozen=True)
class FinetuneConfig:
    """Training while pruning (nnchip.prune.finetune): AdamW, cosine learning rate."""

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_steps"):
            value = getattr(self, name)
            if value is None and name == "max_steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"finetune.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ConfigError(f"finetune.lr must be positive, got {self.lr!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(f"finetune.weight_decay must be >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PruneRecipe:
    base: Recipe  # model, data, pretrain, seed, out (and quant/ptq/qat when `quantized`)
    prune: PruneConfig
    finetune: FinetuneConfig | None
    quantized: bool  # the recipe has a `quant` section


def prune_recipe_from_dict(data: Any, *, base_dir: Path | None = None, source: str | None = None) -> PruneRecipe:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a pruning recipe must be a mapping, got {type(data).__name__}")
    if "prune" not in data:
        raise ConfigError("prune is required: a mapping of PruneConfig fields (structure, sparsity, ...)")
    finetune = data.get("finetune")
    if finetune is not None:
        if not isinstance(finetune, Mapping):
            raise ConfigError("finetune must be a mapping of epochs, lr, batch_size, weight_decay, max_steps")
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        for key in finetune:
            if key not in known:
                raise ConfigError(f"unknown recipe key 'finetune.{key}'; known here: {', '.join(sorted(known))}")
    rest = {k: v for k, v in data.items() if k not in ("prune", "finetune")}
    return PruneRecipe(
        base=recipe_from_dict(rest, base_dir=base_dir, source=source),
        prune=PruneConfig.from_dict(data["prune"] or {}),
        finetune=FinetuneConfig(**finetune) if finetune is not None else None,
        quantized="quant" in data,
    )


def load_prune_recipe(path: str | Path) -> PruneRecipe:
    path = Path(path)
    data = read_recipe_yaml(path)
    return prune_recipe_from_dict(data, base_dir=path.parent, source=str(path))
