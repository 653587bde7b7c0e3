"""Chebyshev (L∞) distance max |x − p| (comparators only: subtract, absolute value, max)."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.vq.metrics import METRICS, Metric


def chebyshev_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) -> (G, N, K)."""
    return torch.cdist(x, codebook, p=float("inf"))


def chebyshev_int_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """Exact int64 max |x − p|: x (G, N, v), codebook (G, K, v) -> (G, N, K)."""
    x, codebook = x.to(torch.int64), codebook.to(torch.int64)
    total = torch.zeros(x.shape[0], x.shape[1], codebook.shape[1], dtype=torch.int64)
    for j in range(x.shape[-1]):  # one element of the sub-vectors at a time: memory (G, N, K)
        total = torch.maximum(total, (x[..., j].unsqueeze(2) - codebook[..., j].unsqueeze(1)).abs())  # (G, N, K)
    return total


METRICS.register("chebyshev")(Metric("chebyshev", chebyshev_distance, chebyshev_int_distance))
