"""Keep ratios for token pruning chosen against a modeled latency (systolic-array cycles, nnchip.hw).

`keep_ratio_for_latency(model, x, target=0.7)` returns the TokenPruneConfig with the largest keep ratio on a
grid (1, 1 − step, 1 − 2·step, …) whose token-pruned model needs at most `target` × the cycles of the
unpruned model on an R×C array (SCALE-Sim's convention, `nnchip.hw.systolic`). The ratio applies to every
chosen block, so the token count shrinks geometrically with depth (ρ, ρ², … of the tokens, as in
DynamicViT's schedule); modeled latency only falls as the ratio falls, so a bisection over the grid finds it.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from nnchip.core.errors import ConfigError
from nnchip.hw.systolic import workload_cycles
from nnchip.hw.workload import workload_from_model
from nnchip.prune.token import prune_tokens
from nnchip.prune.token_config import TokenPruneConfig


def modeled_cycles(model: nn.Module, example_input: Tensor, *, rows: int = 16, cols: int = 16,
                   dataflow: str = "ws") -> int:
    """Compute cycles per sample of every conv/linear/attention GEMM of `model` on a rows×cols array."""
    return int(workload_cycles(workload_from_model(model, example_input[:1]), rows, cols, dataflow))


def keep_ratio_for_latency(model: nn.Module, example_input: Tensor, target: float, *,
                           blocks: tuple[int, ...] | None = None, step: float = 0.05, rows: int = 16,
                           cols: int = 16, dataflow: str = "ws") -> tuple[TokenPruneConfig, int, int]:
    """(config, its modeled cycles, the unpruned model's cycles) for the largest keep ratio that meets
    cycles <= target · unpruned cycles (see the module docstring)."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target <= 1.0:
        raise ConfigError(f"latency target must be a fraction of the unpruned latency in (0, 1], got {target!r}")
    if not 0.0 < step < 1.0:
        raise ConfigError(f"keep-ratio step must be in (0, 1), got {step!r}")
    grid = [round(1.0 - i * step, 6) for i in range(math.ceil(1.0 / step)) if 1.0 - i * step > 0]  # descending
    dense = modeled_cycles(model, example_input, rows=rows, cols=cols, dataflow=dataflow)
    budget = target * dense

    def cycles_at(ratio: float) -> tuple[TokenPruneConfig, int]:
        config = TokenPruneConfig(keep_ratio=ratio, blocks=blocks)
        pruned = prune_tokens(model, config, example_inputs=example_input[:1])
        return config, modeled_cycles(pruned, example_input, rows=rows, cols=cols, dataflow=dataflow)

    smallest = cycles_at(grid[-1])
    if smallest[1] > budget:
        raise ConfigError(f"latency target {target} unreachable by token pruning: keep ratio {grid[-1]} still needs "
                          f"{smallest[1] / dense:.3f} of the unpruned cycles")
    low, high, best = 0, len(grid) - 1, smallest  # grid[high] meets the budget; find the first index that does
    while low < high:
        middle = (low + high) // 2
        candidate = cycles_at(grid[middle])
        if candidate[1] <= budget:
            high, best = middle, candidate
        else:
            low = middle + 1
    return best[0], best[1], dense
