"""PruneConfig: one frozen, validated description of a pruning run (structure, amount, schedule, scope)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnchip.core.errors import ConfigError

SCOPES = ("layer", "global")
SCHEDULES = ("one_shot", "gradual", "prune_regrow")
REGROW_STRUCTURES = ("unstructured", "nm")  # fixed 0/1 masks that can be edited weight by weight
BLOCK_SCORES = ("magnitude", "taylor1", "taylor2")
BLOCK_BUDGETS = ("sparsity", "flops", "latency", "energy")
CONFIG_VERSION = 1


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how much.

    structure        registered name: "unstructured" (magnitude), "nm" (N:M along the reduction axis),
                     "channel" (filters/channels and attention heads, physically removed)
                     "block" (2-D blocks of the im2col view, Taylor-scored, allocated under a budget)
    sparsity         fraction of weights (unstructured) or channels/heads (channel) removed, in [0, 1);
                     N:M removes 1 - n/m and ignores it; block: the fraction of `budget` removed
    scope            "layer": every layer at `sparsity`; "global": one magnitude threshold over all layers
    n, m             keep n of every m consecutive weights of a row of the (C_out, C_in·kh·kw) im2col view
    sr_ste           N:M only: the mask is recomputed from |w| at every forward and training uses SR-STE
                     (straight-through gradient + sr_ste_decay · (1 − mask) ⊙ w)
    schedule         "one_shot", or "gradual": sparsity follows the cubic schedule from initial_sparsity to
                     `sparsity` over `steps` pruning steps (see schedule.py), or "prune_regrow" (RigL-style,
                     unstructured and N:M): one-shot at `sparsity`, then during fine-tuning every `regrow_every`
                     steps the smallest-|w| fraction of the kept weights is dropped and as many pruned positions
                     with the largest |gradient| are regrown at zero (see regrow.py)
    regrow_every     prune_regrow only: training steps between two mask updates
    regrow_fraction  prune_regrow only: α, the fraction of kept weights moved at the first update, decayed as
                     α/2·(1 + cos(π·t/T_end)) (RigL), in (0, 1]
    regrow_until     prune_regrow only: T_end as a fraction of the fine-tune steps; later the masks are final
    levels           nested multi-level sparsity (unstructured, N:M): increasing sparsities s_0 < … < s_{L−1}
                     whose masks are nested (M_0 ⊇ … ⊇ M_{L−1}); replaces `sparsity` (N:M: replaces n, each
                     level keeps m·(1 − s_l) of every m); fine-tuned with the sandwich rule (see nested.py)
    level            nested only: the active level after pruning/fine-tuning (0 = densest), which quantization,
                     lowering and the dense export files use; set_sparsity_level(model, l) switches it
    skip_first_last  leave the first and the last conv/linear (module order) dense (unstructured, N:M)
    exclude          module paths left dense
    layer_sparsity   (path, sparsity) overrides of `sparsity` for single layers (channel: producer layers)
    heads            channel only: also remove attention heads (separate q/k/v projections)
    block_shape      block only: (rows, cols) of a block of the (C_out, C_in·kh·kw) im2col view; must divide it
    score            block only: "magnitude" (Σ|w|), "taylor1" (|Σ g·w|), "taylor2" (+ ½ Σ w²·F, empirical
                     Fisher); Taylor scores need calibration inputs (example_inputs), see prune/taylor.py
    budget           block only: what `sparsity` is a fraction of — "sparsity" (weights of the pruned layers),
                     or of the whole model's "flops" (MACs), modeled "latency" (systolic cycles, zero blocks
                     skipped) or modeled "energy" (45 nm table, zero-skipping); see prune/budget.py
    calib_batch_size block only: images per gradient batch of the Taylor statistics (1: per-sample gradients,
                     the empirical Fisher proper; larger batches are faster and underestimate F)
    """

    structure: str = "unstructured"
    sparsity: float = 0.5
    scope: str = "layer"
    n: int = 2
    m: int = 4
    sr_ste: bool = False
    sr_ste_decay: float = 2e-4
    schedule: str = "one_shot"
    initial_sparsity: float = 0.0
    steps: int = 1
    skip_first_last: bool = True
    exclude: tuple[str, ...] = ()
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    heads: bool = True
    block_shape: tuple[int, int] = (4, 4)
    score: str = "taylor2"
    budget: str = "sparsity"
    calib_batch_size: int = 1
    regrow_every: int = 100
    regrow_fraction: float = 0.3
    regrow_until: float = 0.75
    levels: tuple[float, ...] = ()
    level: int = 0

    def __post_init__(self) -> None:
        from nnchip.prune.registry import PRUNE_STRUCTURES

        PRUNE_STRUCTURES.get(self.structure, field="prune.structure")
        _check_fraction(self.sparsity, "prune.sparsity")
        _check_fraction(self.initial_sparsity, "prune.initial_sparsity")
        for path, value in self.layer_sparsity:
            _check_fraction(value, f"prune.layer_sparsity[{path!r}]")
        if self.scope not in SCOPES:
            raise ConfigError(f"prune.scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"prune.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("n", "m", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"prune.{name} must be a positive integer, got {value!r}")
        if self.n > self.m:
            raise ConfigError(f"prune.n ({self.n}) must not exceed prune.m ({self.m})")
        if self.sr_ste_decay < 0:
            raise ConfigError(f"prune.sr_ste_decay must be >= 0, got {self.sr_ste_decay}")
        if self.sr_ste and self.structure != "nm":
            raise ConfigError("prune.sr_ste applies to structure 'nm' only")
        self._check_block_fields()
        self._check_regrow_fields()
        self._check_levels()
        if self.schedule == "gradual" and self.initial_sparsity > self.sparsity:
            raise ConfigError(f"prune.initial_sparsity ({self.initial_sparsity}) exceeds prune.sparsity "
                              f"({self.sparsity})")

    def _check_block_fields(self) -> None:
        shape = self.block_shape
        if (not isinstance(shape, tuple) or len(shape) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)):
            raise ConfigError(f"prune.block_shape must be two positive integers (rows, cols), got {shape!r}")
        if self.score not in BLOCK_SCORES:
            raise ConfigError(f"prune.score must be one of {', '.join(BLOCK_SCORES)}, got {self.score!r}")
        if self.budget not in BLOCK_BUDGETS:
            raise ConfigError(f"prune.budget must be one of {', '.join(BLOCK_BUDGETS)}, got {self.budget!r}")
        size = self.calib_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"prune.calib_batch_size must be a positive integer, got {size!r}")
        if self.structure != "block":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name in ("block_shape", "score", "budget", "calib_batch_size"):
                if getattr(self, name) != defaults[name]:
                    raise ConfigError(f"prune.{name} applies to structure 'block' only")

    def _check_regrow_fields(self) -> None:
        every = self.regrow_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"prune.regrow_every must be a positive integer, got {every!r}")
        for name in ("regrow_fraction", "regrow_until"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
                raise ConfigError(f"prune.{name} must be in (0, 1], got {value!r}")
        if self.schedule == "prune_regrow":
            if self.structure not in REGROW_STRUCTURES:
                raise ConfigError(f"prune.schedule 'prune_regrow' supports structures {', '.join(REGROW_STRUCTURES)}, "
                                  f"got {self.structure!r}")
            if self.sr_ste:
                raise ConfigError("prune.sr_ste recomputes the N:M mask at every forward: it does not combine with "
                                  "prune.schedule 'prune_regrow'")
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in ("regrow_every", "regrow_fraction", "regrow_until"):
            if getattr(self, name) != defaults[name]:
                raise ConfigError(f"prune.{name} applies to schedule 'prune_regrow' only")

    def _check_levels(self) -> None:
        levels, level = self.levels, self.level
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ConfigError(f"prune.level must be a non-negative integer, got {level!r}")
        if isinstance(levels, list):  # a list from code or YAML: stored as a tuple (hashable, frozen)
            levels = tuple(levels)
            object.__setattr__(self, "levels", levels)
        if not isinstance(levels, tuple):
            raise ConfigError(f"prune.levels must be a list of sparsities, got {levels!r}")
        if not levels:
            if level:
                raise ConfigError("prune.level applies to nested sparsity (prune.levels) only")
            return
        if len(levels) < 2:
            raise ConfigError(f"prune.levels needs at least two sparsities, got {list(levels)}")
        for i, value in enumerate(levels):
            _check_fraction(value, f"prune.levels[{i}]")
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            raise ConfigError(f"prune.levels must increase strictly (densest first), got {list(levels)}")
        if level >= len(levels):
            raise ConfigError(f"prune.level {level} is not a level index 0..{len(levels) - 1}")
        if self.structure not in REGROW_STRUCTURES:
            raise ConfigError(f"prune.levels (nested sparsity) supports structures {', '.join(REGROW_STRUCTURES)}, "
                              f"got {self.structure!r}")
        if self.schedule == "prune_regrow" or self.sr_ste or self.layer_sparsity:
            raise ConfigError("prune.levels (nested sparsity) does not combine with schedule 'prune_regrow', sr_ste "
                              "or layer_sparsity")
        if self.structure == "nm":
            for i, value in enumerate(levels):
                kept = self.m * (1.0 - value)
                if abs(kept - round(kept)) > 1e-9 or round(kept) < 1:
                    raise ConfigError(f"prune.levels[{i}]: {value} keeps {kept:g} of every m = {self.m} weights; "
                                      "N:M levels must keep a whole number >= 1")

    @property
    def nested(self) -> bool:
        return bool(self.levels)

    @property
    def uses_calibration(self) -> bool:
        """Block pruning with Taylor scores or a hardware budget reads calibration inputs (example_inputs)."""
        return self.structure == "block" and (self.score != "magnitude" or self.budget != "sparsity")

    @property
    def target_sparsity(self) -> float:
        """The fraction of weights (or channels) the finished pruning removes from each pruned layer."""
        if self.levels:
            return self.levels[self.level]
        return 1.0 - self.n / self.m if self.structure == "nm" else self.sparsity

    def sparsity_of(self, path: str, default: float) -> float:
        return dict(self.layer_sparsity).get(path, default)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": CONFIG_VERSION, **dataclasses.asdict(self)}
        out["exclude"] = list(self.exclude)
        out["layer_sparsity"] = dict(self.layer_sparsity)
        out["block_shape"] = list(self.block_shape)
        out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "prune") -> PruneConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k != "version"}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown recipe key '{where}.{key}'; known here: {', '.join(sorted(known))}")
        if "exclude" in values:
            values["exclude"] = tuple(values["exclude"] or ())
        if "layer_sparsity" in values:
            overrides = values["layer_sparsity"] or {}
            if not isinstance(overrides, Mapping):
                raise ConfigError(f"{where}.layer_sparsity must map a module path to a sparsity")
            values["layer_sparsity"] = tuple(sorted(overrides.items()))
        if isinstance(values.get("levels"), list):
            values["levels"] = tuple(values["levels"])
        if isinstance(values.get("block_shape"), list):
            values["block_shape"] = tuple(values["block_shape"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _check_fraction(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{where} must be in [0, 1), got {value!r}")
