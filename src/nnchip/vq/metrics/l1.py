"""Manhattan distance Σ |x − p| (multiplier-free: subtract, absolute value, add)."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.vq.metrics import METRICS, Metric


def l1_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) -> (G, N, K)."""
    return torch.cdist(x, codebook, p=1.0)


def l1_int_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """Exact int64 Σ |x − p|: x (G, N, v), codebook (G, K, v) -> (G, N, K)."""
    x, codebook = x.to(torch.int64), codebook.to(torch.int64)
    total = torch.zeros(x.shape[0], x.shape[1], codebook.shape[1], dtype=torch.int64)
    for j in range(x.shape[-1]):  # one element of the sub-vectors at a time: memory (G, N, K)
        total = total + (x[..., j].unsqueeze(2) - codebook[..., j].unsqueeze(1)).abs()  # (G, N, K)
    return total


METRICS.register("l1")(Metric("l1", l1_distance, l1_int_distance))
