"""Prune-and-regrow (dynamic sparse training, RigL-style; Evci et al. 2020) for unstructured and N:M masks.

The model is pruned one-shot to the target; during fine-tuning, at every step t = k·ΔT (ΔT = `regrow_every`)
with 0 < t < T_end (T_end = `regrow_until` · training steps) the masks move while the sparsity stays exact:

    f(t)   = α/2 · (1 + cos(π·t / T_end))                    α = `regrow_fraction` (cosine decay)
    count  = round(f(t) · kept)                              kept: non-pruned weights of the layer
                                                             (scope "global": of all pruned layers)
    drop   = the `count` kept weights of smallest |w|
    grow   = the `count` positions pruned *before* this update with the largest |∂L/∂(w ⊙ mask)|
             (the dense gradient of the current batch); they restart at w = 0, their optimizer state zeroed
Ties go to the lower flat index. N:M: a group gives up at most as many weights as it has pruned positions
and regrows exactly as many inside the same group, so every group keeps its count (N of M holds).
After T_end the masks are final: fixed WeightMask parametrizations like the other structures'.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from nnchip.core.errors import ConfigError
from nnchip.core.mask import WeightMask, raw_weight
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import prunable_layers


def regrow_fraction(step: int, until: int, alpha: float) -> float:
    """α/2 · (1 + cos(π·step/until)) for 0 <= step < until, else 0."""
    if not 0 <= step < until:
        return 0.0
    return 0.5 * alpha * (1.0 + math.cos(math.pi * step / until))


def _ranks(scores: Tensor, descending: bool) -> Tensor:
    """Rank of every entry along the last axis (0 = first in stable sorted order)."""
    order = torch.sort(scores, dim=-1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1]).expand_as(order).contiguous())
    return ranks


def drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, count: int) -> Tensor:
    """New 0/1 mask (N,): the `count` kept entries of smallest magnitude dropped, the `count` previously
    pruned entries of largest |gradient| grown; count is capped so that the number kept stays the same."""
    kept = mask > 0  # (N,)
    count = min(count, int(kept.sum()), int((~kept).sum()))
    new = mask.clone()
    if count <= 0:
        return new
    drop = torch.sort(torch.where(kept, magnitude, torch.inf), stable=True).indices[:count]
    grow = torch.sort(torch.where(kept, -torch.inf, gradient.abs()), descending=True, stable=True).indices[:count]
    new[drop] = 0.0
    new[grow] = 1.0
    return new


def nm_drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, count: int) -> Tensor:
    """The same on groups (G, m): drops are chosen over all groups, but a group gives up at most its number
    of pruned positions, and grows exactly as many (largest |gradient| of its pruned positions)."""
    kept = mask > 0  # (G, m)
    free = (~kept).sum(dim=-1, keepdim=True)  # (G, 1) pruned positions per group
    eligible = kept & (_ranks(torch.where(kept, magnitude, torch.inf), descending=False) < free)
    count = min(count, int(eligible.sum()))
    new = mask.clone()
    if count <= 0:
        return new
    drop = torch.zeros(mask.numel(), dtype=torch.bool)
    drop[torch.sort(torch.where(eligible, magnitude, torch.inf).reshape(-1), stable=True).indices[:count]] = True
    drop = drop.reshape(mask.shape)
    per_group = drop.sum(dim=-1, keepdim=True)  # (G, 1)
    grow = ~kept & (_ranks(torch.where(kept, -torch.inf, gradient.abs()), descending=True) < per_group)
    new[drop] = 0.0
    new[grow] = 1.0
    return new


class PruneRegrow:
    """The mask updates of schedule "prune_regrow" in a training loop (nnchip.prune.finetune):

        regrow = PruneRegrow(model, config, total_steps)      # after the one-shot pruning
        with regrow.capture() if regrow.due(step) else nullcontext():
            loss.backward()                                    # forward and backward inside
        optimizer.step(); regrow.update(step, optimizer) if due
    """

    def __init__(self, model: nn.Module, config: PruneConfig, total_steps: int) -> None:
        self.config = config
        self.until = round(config.regrow_until * total_steps)
        self.layers: list[tuple[str, nn.Module]] = []
        for path, layer in prunable_layers(model, config):
            chain = getattr(getattr(layer, "parametrizations", None), "weight", ())
            if len(chain) != 1 or not isinstance(chain[0], WeightMask):
                raise ConfigError(f"prune.schedule 'prune_regrow': layer {path} ({type(layer).__name__}) has no "
                                  "fixed pruning mask to update")
            self.layers.append((path, layer))
        self.gradients: list[Tensor] = []
        self.moved: list[int] = []  # weights moved at each update (dropped = grown)

    def due(self, step: int) -> bool:
        return step > 0 and step % self.config.regrow_every == 0 and step < self.until

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Keep the gradient of the masked weights w ⊙ mask (dense) of the forward/backward run inside."""
        with parametrize.cached():
            weights = [layer.weight for _, layer in self.layers]  # cached: the forward uses these tensors
            for weight in weights:
                weight.retain_grad()
            yield
            self.gradients = [w.grad.detach().clone() if w.grad is not None else torch.zeros_like(w)
                              for w in weights]

    @torch.no_grad()
    def update(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Drop and regrow (module docstring) with the captured gradients; returns the number moved."""
        if len(self.gradients) != len(self.layers):
            raise RuntimeError("PruneRegrow.update needs the gradients of capture() from the same step")
        fraction = regrow_fraction(step, self.until, self.config.regrow_fraction)
        nm = self.config.structure == "nm"
        shapes = [(-1, self.config.m) if nm else (-1,) for _ in self.layers]
        masks = [layer.parametrizations.weight[0].mask.reshape(shape) for (_, layer), shape in zip(self.layers, shapes,
                                                                                                   strict=True)]
        magnitudes = [raw_weight(layer).detach().abs().reshape(mask.shape)
                      for (_, layer), mask in zip(self.layers, masks, strict=True)]
        gradients = [g.reshape(mask.shape) for g, mask in zip(self.gradients, masks, strict=True)]
        rule = nm_drop_and_grow if nm else drop_and_grow
        if self.config.scope == "global":
            kept = sum(int(mask.sum()) for mask in masks)
            new_all = rule(torch.cat(masks), torch.cat(magnitudes), torch.cat(gradients), round(fraction * kept))
            new_masks = list(torch.split(new_all, [mask.shape[0] for mask in masks]))
        else:
            new_masks = [rule(mask, mag, grad, round(fraction * int(mask.sum())))
                         for mask, mag, grad in zip(masks, magnitudes, gradients, strict=True)]
        moved = 0
        for (_, layer), old, new in zip(self.layers, masks, new_masks, strict=True):
            changed = (old != new).reshape(layer.parametrizations.weight.original.shape)
            moved += int(((new > 0) & (old == 0)).sum())
            layer.parametrizations.weight[0].mask.copy_(new.reshape(changed.shape))
            original = layer.parametrizations.weight.original
            original[changed] = 0.0  # regrown weights start at zero; dropped ones are zero as before
            state = optimizer.state.get(original, {}) if optimizer is not None else {}
            for value in state.values():
                if isinstance(value, Tensor) and value.shape == original.shape:
                    value[changed] = 0.0
        self.gradients = []
        self.moved.append(moved)
        return moved
