"""Budgets of block pruning: the cost of one block, the allocation of blocks to remove, the cost achieved.

The target s (PruneConfig.sparsity) asks to remove the fraction s of a total, per sample of example_inputs:
  sparsity  the weights of the pruned layers; a block costs r·c
  flops     the MACs of the whole model (every conv/linear and attention matmul, hw.workload_from_model);
            a block costs M·r·c (M = MACs per weight: output positions or tokens of its layer)
  latency   [MODEL] compute cycles of a weight-stationary systolic array of c rows (along K) × r columns
            (along C_out), so that one block is one fold, which skips the folds of pruned blocks: a layer
            takes kept_blocks · (2c + r + M − 2) − count cycles — hw.systolic's WS cycles counting only the
            remaining blocks (equal to gemm_cycles when dense); attention matmuls and layers the block does
            not divide cost their dense gemm_cycles on the same array; a block costs 2c + r + M − 2
  energy    hw.energy.workload_energy with zero-skipping (45 nm table, 8-bit operands): affine in each
            layer's weight density, so a block costs (E(1) − E(½))·2 · r·c / numel
Allocation. Per layer (budget sparsity, scope layer): each layer loses its round(s_l · blocks) lowest-scoring
blocks. Global (any other case): all blocks sorted by score / cost, ascending (stable: earlier layer, lower
block index first); the shortest prefix whose cost reaches s · total is removed, except each layer's best
block, which stays. A target those blocks cannot reach is a ConfigError naming prune.sparsity and the budget.
The achieved cost (`budget_cost`) is measured on the masks with the same models; the removed fraction lies in
[s, s + largest block cost / total).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nnchip.core.errors import ConfigError
from nnchip.core.mask import weight_mask
from nnchip.hw.energy import workload_energy
from nnchip.hw.specs import load_energy
from nnchip.hw.systolic import gemm_cycles
from nnchip.hw.workload import LayerWork, Workload, workload_from_model
from nnchip.prune.block_view import block_sum
from nnchip.prune.config import BLOCK_BUDGETS, PruneConfig
from nnchip.prune.registry import prunable_layers
from nnchip.prune.unstructured import smallest_k_mask

UNITS = {"sparsity": "weights", "flops": "MACs", "latency": "cycles", "energy": "pJ"}


@dataclass(frozen=True)
class BlockCosts:
    per_block: tuple[float, ...]  # cost of one block of each pruned layer
    total: float  # the dense cost that the target is a fraction of
    unit: str


def _workload(model: nn.Module, config: PruneConfig, example_inputs: tuple[Tensor, ...] | None) -> Workload:
    if example_inputs is None:
        raise ConfigError(f"prune.budget {config.budget!r} needs example_inputs (an input batch: its shape sets "
                          "every layer's MACs and cycles)")
    return workload_from_model(model, example_inputs[0][:1])


def _works(work: Workload, layers: Sequence[tuple[str, nn.Module]]) -> list[LayerWork]:
    by_name = {layer.name: layer for layer in work.layers}
    for path, layer in layers:
        if path not in by_name:
            raise ConfigError(f"prune.budget: layer {path} ({type(layer).__name__}) is not a conv/linear of the "
                              "captured workload; exclude it (prune.exclude)")
    return [by_name[path] for path, _ in layers]


def _fold_cycles(work: LayerWork, shape: tuple[int, int]) -> int:
    rows, cols = shape
    return 2 * cols + rows + work.m - 2


def _dense_cycles(work: LayerWork, shape: tuple[int, int]) -> int:
    rows, cols = shape
    return work.count * int(gemm_cycles(work.m, work.k, work.n, cols, rows, "ws"))


def _energy_pj(work: LayerWork, density: float) -> float:
    layer = dataclasses.replace(work, weight_density=density)
    return workload_energy(Workload((layer,)), load_energy(), zero_skipping=True).total_pj


def block_costs(model: nn.Module, layers: Sequence[tuple[str, nn.Module]], config: PruneConfig,
                example_inputs: tuple[Tensor, ...] | None) -> BlockCosts:
    """What one block of each layer costs under `config.budget`, and the model's dense total."""
    rows, cols = config.block_shape
    size = rows * cols
    unit = UNITS[config.budget]
    if config.budget == "sparsity":
        return BlockCosts(tuple(float(size) for _ in layers), float(sum(m.weight.numel() for _, m in layers)), unit)
    work = _workload(model, config, example_inputs)
    works = _works(work, layers)
    if config.budget == "flops":
        per_block = [w.macs / m.weight.numel() * size for w, (_, m) in zip(works, layers, strict=True)]
        return BlockCosts(tuple(per_block), float(work.macs), unit)
    if config.budget == "latency":
        total = sum(_dense_cycles(w, config.block_shape) for w in work.layers)
        return BlockCosts(tuple(float(_fold_cycles(w, config.block_shape)) for w in works), float(total), unit)
    per_block = [2 * (_energy_pj(w, 1.0) - _energy_pj(w, 0.5)) * size / m.weight.numel()
                 for w, (_, m) in zip(works, layers, strict=True)]
    return BlockCosts(tuple(per_block), workload_energy(work, load_energy(), zero_skipping=True).total_pj, unit)


def _density(module: nn.Module) -> Tensor:
    mask = weight_mask(module)
    return torch.ones_like(module.weight) if mask is None else mask


def budget_cost(model: nn.Module, config: PruneConfig, layers: Sequence[tuple[str, nn.Module]],
                example_inputs: tuple[Tensor, ...] | None) -> tuple[float, float]:
    """(dense, remaining) cost of `model` under `config.budget`, measured on its masks (`layers`: the pruned
    layers, for the sparsity budget; the other budgets read every layer of the workload)."""
    if config.budget == "sparsity":
        return (float(sum(m.weight.numel() for _, m in layers)),
                float(sum(_density(m).sum() for _, m in layers)))
    work = _workload(model, config, example_inputs)
    modules = dict(model.named_modules())
    densities = {w.name: float(_density(modules[w.name]).mean()) for w in work.layers if w.name in modules}
    if config.budget == "flops":
        return float(work.macs), float(sum(w.macs * densities.get(w.name, 1.0) for w in work.layers))
    if config.budget == "energy":
        spec = load_energy()
        sparse = Workload(tuple(dataclasses.replace(w, weight_density=max(densities.get(w.name, 1.0), 1e-9))
                                for w in work.layers))
        return (workload_energy(work, spec, zero_skipping=True).total_pj,
                workload_energy(sparse, spec, zero_skipping=True).total_pj)
    rows, cols = config.block_shape
    dense = remaining = 0.0
    for w in work.layers:
        cycles = _dense_cycles(w, config.block_shape)
        dense += cycles
        module = modules.get(w.name)
        if w.kind != "matmul" and module is not None and w.n % rows == 0 and w.k % cols == 0:
            kept = int((block_sum(_density(module), config.block_shape) > 0).sum())
            cycles = max(kept * _fold_cycles(w, config.block_shape) - w.count, 0)
        remaining += cycles
    return dense, remaining


def budget_report(model: nn.Module, config: PruneConfig, example_inputs: Tensor) -> dict[str, Any]:
    """Dense and remaining cost and the removed fraction under every budget, measured on `model`'s masks."""
    layers = prunable_layers(model, config)
    out: dict[str, Any] = {"budget": config.budget, "target": config.sparsity, "block_shape": list(config.block_shape)}
    for name in BLOCK_BUDGETS:
        dense, remaining = budget_cost(model, dataclasses.replace(config, budget=name), layers, (example_inputs,))
        out[name] = {"unit": UNITS[name], "dense": dense, "remaining": remaining, "removed": 1.0 - remaining / dense}
    return out


def allocate_per_layer(scores: Sequence[Tensor], amounts: Sequence[float], paths: Sequence[str]) -> list[Tensor]:
    """Block masks (1 = kept): layer l loses its round(amounts[l] · blocks) lowest scores (ties: lower index)."""
    masks = []
    for score, amount, path in zip(scores, amounts, paths, strict=True):
        k = round(amount * score.numel())
        if amount > 0 and k >= score.numel():
            raise ConfigError(f"prune.sparsity {amount} would remove every block of layer {path} "
                              f"({score.numel()} blocks)")
        masks.append(smallest_k_mask(score, k))
    return masks


def allocate_global(scores: Sequence[Tensor], per_block: Sequence[float], remove: float, budget: str,
                    total: float) -> list[Tensor]:
    """Block masks (1 = kept) removing blocks by ascending score / cost until `remove` (cost) is reached."""
    ratio = torch.cat([s.reshape(-1).double() / c for s, c in zip(scores, per_block, strict=True)])  # (B,)
    cost = torch.cat([torch.full((s.numel(),), c, dtype=torch.float64)
                      for s, c in zip(scores, per_block, strict=True)])
    layer = torch.cat([torch.full((s.numel(),), i, dtype=torch.int64) for i, s in enumerate(scores)])
    order = torch.argsort(ratio, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    best = torch.full((len(scores),), -1, dtype=torch.int64).scatter_reduce(0, layer, rank, "amax")
    candidates = order[rank[order] != best[layer[order]]]  # each layer keeps its best block
    cumulative = torch.cumsum(cost[candidates], 0)
    available = float(cumulative[-1]) if cumulative.numel() else 0.0
    if remove > available:
        raise ConfigError(f"prune.sparsity: no block assignment meets the {budget} budget: it asks to remove "
                          f"{remove / total:.1%} of the model's {UNITS[budget]}, the prunable blocks hold at most "
                          f"{available / total:.1%} (prune.budget {budget!r}; prune fewer layers dense or lower "
                          "prune.sparsity)")
    keep = torch.ones(ratio.numel(), dtype=torch.float32)
    if remove > 0:
        count = int(np.searchsorted(cumulative.numpy(), remove, side="left")) + 1  # first prefix reaching it
        keep[candidates[:count]] = 0.0
    masks, offset = [], 0
    for s in scores:
        masks.append(keep[offset:offset + s.numel()].reshape(s.shape))
        offset += s.numel()
    return masks
