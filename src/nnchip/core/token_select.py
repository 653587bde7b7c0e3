"""Integer token selection with a package token (EViT-style token pruning; docs/integer-semantics.md §3).

Shared by the fake-quant forward, the deploy forward and the interpreter (the export's numpy reader has its
own copy). Inputs are int64: `x` (B, T, C) tokens minus their zero point, token 0 the class token; `probs`
(B, H, T, T) the integer attention probabilities of the block (softmax output, zero point 0).

    score[j]   = Σ_h probs[b, h, 0, j]               for j = 1 … T−1 (the class row; a head average ×H)
    order      = j by descending score, ties to the lower index j
    kept       = the first `keep` of that order, then put back in ascending index order
    w[j]       = score[j] for every dropped j; if Σ_dropped w = 0, every dropped j weighs 1
    package    = div_floor(2·Σ_j w[j]·x[j] + D, 2·D),  D = Σ_dropped w[j]   (round half up, per channel)
    output     = [x[0], x[kept…], package]           (B, keep + 2, C)
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.intmath import div_floor


def class_attention_scores(probs: Tensor) -> Tensor:
    """(B, H, T, T) → (B, T−1): the class token's attention to every other token, summed over heads."""
    return probs[:, :, 0, 1:].sum(dim=1)


def kept_token_indices(scores: Tensor, keep: int) -> Tensor:
    """(B, N) scores → (B, keep) indices (into the N non-class tokens) of the top `keep`, ascending;
    ties go to the lower index (a stable descending sort)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return torch.sort(order[:, :keep], dim=1).values


def package_weights(scores: Tensor, kept: Tensor) -> Tensor:
    """(B, N) weights of the dropped tokens (0 for kept ones); all ones over the dropped tokens of a row
    whose dropped scores sum to zero."""
    dropped = torch.ones_like(scores, dtype=torch.bool).scatter_(1, kept, False)
    weights = torch.where(dropped, scores, torch.zeros_like(scores))
    empty = weights.sum(dim=1, keepdim=True) == 0
    return torch.where(empty & dropped, torch.ones_like(weights), weights)


def token_select(x: Tensor, probs: Tensor, keep: int) -> Tensor:
    """The integer token selection above: (B, T, C), (B, H, T, T) → (B, keep + 2, C), all int64."""
    scores = class_attention_scores(probs)  # (B, N)
    kept = kept_token_indices(scores, keep)  # (B, keep)
    weights = package_weights(scores, kept)  # (B, N)
    rest = x[:, 1:]
    gathered = torch.gather(rest, 1, kept.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, keep, C)
    total = (weights.unsqueeze(-1) * rest).sum(dim=1, keepdim=True)  # (B, 1, C)
    count = weights.sum(dim=1).reshape(-1, 1, 1)  # (B, 1, 1) > 0
    package = div_floor(2 * total + count, 2 * count)
    return torch.cat([x[:, :1], gathered, package], dim=1)
