"""Nested multi-level sparsity (NestedNet-style; algorithms.md §7.4): one weight tensor, masks at L levels.

Levels s_0 < s_1 < … < s_{L−1} (`PruneConfig.levels`). Weights are ranked by |w| (descending, ties to the
lower index) and level l keeps the first k_l of the ranking, so the masks are nested by construction:

    unstructured, per layer:  k_l = round((1 − s_l) · |W|)            (scope "global": over all pruned layers)
    N:M:                      each group of m ranks its own weights, k_l = m · (1 − s_l): top-1 ⊆ top-2 ⊆ …
    keep_i = #{l : rank_i < k_l}     M_l = [keep > l]     M_0 ⊇ M_1 ⊇ … ⊇ M_{L−1}
(level l+1 keeps the top k_{l+1} of level l's weights: the formula of §7.4, with the same score).
The masks are NestedMask parametrizations (nnchip.core.nested_mask); `set_sparsity_level(model, l)`
switches the level of the float model, the QModel, and hence of what `lower()` produces.

Training (nnchip.prune.finetune) uses the **sandwich rule**: every step sums the cross-entropy losses of the
densest level, the sparsest level and one level drawn uniformly from the others (with L ≤ 3 levels: every
level), in a random order. BatchNorm is shared by the levels and keeps its running statistics frozen while
they train (nnchip.prune.api): statistics updated by a mix of levels fit none of them. A gradual schedule
re-derives the nested masks at each pruning step from the level-0 weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnchip.core.mask import raw_weight, weight_mask
from nnchip.core.nested_mask import nested_mask, set_nested_mask
from nnchip.prune.config import PruneConfig
from nnchip.prune.nm import check_divisible
from nnchip.prune.registry import prunable_layers


def nested_keep(scores: Tensor, counts: Sequence[int]) -> Tensor:
    """keep (int64, scores' shape): how many of the levels keep each entry; level l keeps the counts[l] largest
    scores along the last axis (stable: ties to the lower index); counts must not increase."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1]).expand_as(order).contiguous())
    return sum(((ranks < k).to(torch.int64) for k in counts), torch.zeros_like(ranks))


def _scores(layer: nn.Module) -> Tensor:
    """|w| of the densest current weight: entries already pruned at every level score 0 and stay last."""
    weight = raw_weight(layer).detach().abs()
    nested = nested_mask(layer)
    if nested is not None:
        return weight * nested.level_mask(0)
    mask = weight_mask(layer)
    return weight if mask is None else weight * mask


@torch.no_grad()
def prune_nested(model: nn.Module, config: PruneConfig, sparsities: Sequence[float]) -> nn.Module:
    """Nested masks on `model` itself at `sparsities` (one per level, increasing; see the module docstring)."""
    layers = prunable_layers(model, config)
    if config.structure == "nm":
        counts = [round(config.m * (1.0 - s)) for s in sparsities]
        for path, layer in layers:
            check_divisible(path, layer, config.m)
            scores = _scores(layer).reshape(layer.weight.shape[0], -1, config.m)  # (C_out, K/m, m)
            keep = nested_keep(scores, counts).reshape(layer.weight.shape)
            set_nested_mask(layer, keep, config.levels, config.level)
        return model
    if config.scope == "global":
        scores = torch.cat([_scores(layer).reshape(-1) for _, layer in layers])  # (Σ numel,)
        keep = nested_keep(scores, [round((1.0 - s) * scores.numel()) for s in sparsities])
        for (_, layer), part in zip(layers, torch.split(keep, [layer.weight.numel() for _, layer in layers]),
                                    strict=True):
            set_nested_mask(layer, part.reshape(layer.weight.shape), config.levels, config.level)
        return model
    for _, layer in layers:
        scores = _scores(layer).reshape(-1)
        keep = nested_keep(scores, [round((1.0 - s) * scores.numel()) for s in sparsities])
        set_nested_mask(layer, keep.reshape(layer.weight.shape), config.levels, config.level)
    return model


def sandwich_levels(num_levels: int, generator: torch.Generator) -> list[int]:
    """The levels trained at one step: densest, sparsest and one drawn from the others, in a random order."""
    chosen = [0, num_levels - 1]
    if num_levels > 3:
        chosen.append(1 + int(torch.randint(num_levels - 2, (1,), generator=generator)))
    elif num_levels == 3:
        chosen.append(1)
    return [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]
