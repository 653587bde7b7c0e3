"""Pruning schedules: the sparsity to apply at pruning step t of T.

    one-shot:  s(t) = s_f
    gradual (cubic, Zhu & Gupta 2017):  s(t) = s_f + (s_i − s_f) · (1 − t/T)³,   t = 1 … T
so most weights go early, when many are redundant, and the last steps remove few.
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
    if config.schedule == "one_shot":
        return config.sparsity
    return cubic_sparsity(step, config.steps, config.initial_sparsity, config.sparsity)
