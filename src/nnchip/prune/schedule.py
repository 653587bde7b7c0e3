"""Pruning schedules: the sparsity to apply at pruning step t of T.

    one-shot:  s(t) = s_f
    gradual (cubic, Zhu & Gupta 2017):  s(t) = s_f + (s_i − s_f) · (1 − t/T)³,   t = 1 … T
so most weights go early, when many are redundant, and the last steps remove few.
    prune-and-regrow: s(t) = s_f (one-shot); the masks then move during fine-tuning (regrow.py)
    nested levels:    every level follows its own schedule, s_l(t) = s(t) with s_f = levels[l]; the cubic
                      is increasing in s_f, so the levels stay ordered at every step
"""

from __future__ import annotations

from nnchip.core.errors import ConfigError
from nnchip.prune.config import PruneConfig


def cubic_sparsity(step: int, steps: int, initial: float, final: float) -> float:
    """s_f + (s_i − s_f) · (1 − step/steps)³ for step in 1..steps."""
    if not 1 <= step <= steps:
        raise ConfigError(f"pruning step {step} is outside 1..{steps}")
    return final + (initial - final) * (1.0 - step / steps) ** 3


def scheduled_sparsity(config: PruneConfig, step: int) -> float:
    """The sparsity that pruning step `step` (1-based) of `config.steps` applies."""
    return _scheduled(config, step, config.sparsity)


def scheduled_levels(config: PruneConfig, step: int) -> tuple[float, ...]:
    """Nested sparsity: the sparsity of every level (config.levels) at pruning step `step`."""
    return tuple(_scheduled(config, step, final) for final in config.levels)


def _scheduled(config: PruneConfig, step: int, final: float) -> float:
    if config.schedule != "gradual":
        return final
    return cubic_sparsity(step, config.steps, min(config.initial_sparsity, final), final)
