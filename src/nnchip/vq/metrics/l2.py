"""Euclidean distance. Float: ‖x − p‖₂ (torch.cdist); integer: Σ (x − p)² — the square root dropped, same argmin."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.vq.metrics import METRICS, Metric


def l2_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) -> (G, N, K) Euclidean distances."""
    return torch.cdist(x, codebook, p=2.0)  # matrix-product form for large N (float rounding only)


def l2_int_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) integer -> (G, N, K) squared Euclidean distances, exact int64."""
    x, codebook = x.to(torch.int64), codebook.to(torch.int64)
    total = torch.zeros(x.shape[0], x.shape[1], codebook.shape[1], dtype=torch.int64)
    for j in range(x.shape[-1]):  # one element of the sub-vectors at a time: memory (G, N, K)
        diff = x[..., j].unsqueeze(2) - codebook[..., j].unsqueeze(1)  # (G, N, K)
        total = total + diff * diff
    return total


METRICS.register("l2")(Metric("l2", l2_distance, l2_int_distance))
