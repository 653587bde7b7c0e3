"""TokenPruneConfig: which attention blocks of a ViT keep how many tokens (nnchip.prune.token)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nnchip.core.errors import ConfigError

CONFIG_VERSION = 1


@dataclass(frozen=True)
class TokenPruneConfig:
    """Keep ratios of EViT-style token pruning.

    keep_ratio         fraction of the non-class tokens kept by every pruned block, in (0, 1]; a block with
                       N non-class tokens keeps k = ceil(keep_ratio · N) of them and folds the other N − k
                       into one package token (nothing happens when k = N)
    blocks             indices (0-based, in execution order) of the attention blocks pruned with
                       `keep_ratio`; None: every attention block
    block_keep_ratios  one keep ratio per attention block (1.0: not pruned); replaces keep_ratio/blocks
    """

    keep_ratio: float = 0.7
    blocks: tuple[int, ...] | None = None
    block_keep_ratios: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_ratio(self.keep_ratio, "token.keep_ratio")
        for index, ratio in enumerate(self.block_keep_ratios):
            _check_ratio(ratio, f"token.block_keep_ratios[{index}]")
        if self.blocks is not None:
            for block in self.blocks:
                if isinstance(block, bool) or not isinstance(block, int) or block < 0:
                    raise ConfigError(f"token.blocks must hold block indices >= 0, got {block!r}")
            if len(set(self.blocks)) != len(self.blocks):
                raise ConfigError(f"token.blocks has a repeated block index: {list(self.blocks)}")
            if self.block_keep_ratios:
                raise ConfigError("token.blocks and token.block_keep_ratios exclude each other; give one")

    def ratios_for(self, block_names: Sequence[str]) -> tuple[float, ...]:
        """The keep ratio of every attention block of a model (named by path, for the error message)."""
        count = len(block_names)
        listing = ", ".join(f"{i}: {name}" for i, name in enumerate(block_names))
        if self.block_keep_ratios:
            if len(self.block_keep_ratios) != count:
                raise ConfigError(f"token.block_keep_ratios has {len(self.block_keep_ratios)} entries but the model "
                                  f"has {count} attention blocks ({listing})")
            return tuple(float(r) for r in self.block_keep_ratios)
        chosen = set(range(count)) if self.blocks is None else set(self.blocks)
        missing = sorted(b for b in chosen if b >= count)
        if missing:
            raise ConfigError(f"token.blocks: no attention block {missing[0]}; the model has {count} ({listing})")
        return tuple(float(self.keep_ratio) if i in chosen else 1.0 for i in range(count))

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, "keep_ratio": self.keep_ratio,
                "blocks": None if self.blocks is None else list(self.blocks),
                "block_keep_ratios": list(self.block_keep_ratios)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "token") -> TokenPruneConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k != "version"}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown recipe key '{where}.{key}'; known here: {', '.join(sorted(known))}")
        for key in ("blocks", "block_keep_ratios"):
            value = values.get(key)
            if value is not None and not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}.{key} must be a list, got {type(value).__name__}")
        if values.get("blocks") is not None:
            values["blocks"] = tuple(values["blocks"])
        if "block_keep_ratios" in values:
            values["block_keep_ratios"] = tuple(values["block_keep_ratios"] or ())
        return cls(**values)


def _check_ratio(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"{where} must be in (0, 1], got {value!r}")
