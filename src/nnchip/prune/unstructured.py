"""Unstructured magnitude pruning, per layer or with one global threshold.

    per layer:  mask_l = 0 on the round(s_l · |W_l|) entries of smallest |w| (ties: lower flat index first)
    global:     the round(s · Σ_l |W_l|) smallest |w| over all pruned layers together
Entries already pruned stay pruned (their magnitude is 0), so a gradual schedule only ever adds zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.core.mask import set_mask
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import prunable_layers, register_structure


def smallest_k_mask(scores: Tensor, k: int) -> Tensor:
    """0/1 mask of `scores`' shape with zeros on the k smallest scores (stable order breaks ties)."""
    flat = scores.reshape(-1)
    mask = torch.ones_like(flat)
    if k > 0:
        order = torch.argsort(flat, stable=True)
        mask[order[:k]] = 0.0
    return mask.reshape(scores.shape)


@register_structure("unstructured")
@torch.no_grad()
def prune_unstructured(model: nn.Module, config: PruneConfig, sparsity: float,
                       example_inputs: tuple[Tensor, ...] | None) -> nn.Module:
    del example_inputs  # magnitude pruning needs no data
    layers = prunable_layers(model, config)
    if config.scope == "global":
        scores = torch.cat([layer.weight.detach().abs().reshape(-1) for _, layer in layers])  # (Σ numel,)
        mask = smallest_k_mask(scores, round(sparsity * scores.numel()))
        offset = 0
        for _, layer in layers:
            count = layer.weight.numel()
            set_mask(layer, mask[offset:offset + count].reshape(layer.weight.shape))
            offset += count
        return model
    for path, layer in layers:
        amount = config.sparsity_of(path, sparsity)
        set_mask(layer, smallest_k_mask(layer.weight.detach().abs(), round(amount * layer.weight.numel())))
    return model
