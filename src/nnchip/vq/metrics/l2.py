"""Euclidean distance. Float: ‖x − p‖₂ (torch.cdist); integer: Σ (x − p)² — the square root dropped, same argmin."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.vq.metrics import METRICS, Metric, nearest_index


def l2_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) -> (G, N, K) Euclidean distances."""
    return torch.cdist(x, codebook, p=2.0)  # matrix-product form for large N (float rounding only)


def l2_search(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v) (any strides), codebook (G, K, v) -> nearest indices (G, N) by ‖p‖² − 2·x·p = ‖x − p‖² − ‖x‖²
    (no square root, no ‖x‖² term, one batched matrix product)."""
    scores = torch.bmm(x, codebook.transpose(1, 2))  # (G, N, K)
    scores.mul_(-2.0).add_(codebook.pow(2).sum(-1).unsqueeze(1))
    return nearest_index(scores)


def l2_int_distance(x: Tensor, codebook: Tensor) -> Tensor:
    """x (G, N, v), codebook (G, K, v) integer -> (G, N, K) squared Euclidean distances, exact int64."""
    x, codebook = x.to(torch.int64), codebook.to(torch.int64)
    total = torch.zeros(x.shape[0], x.shape[1], codebook.shape[1], dtype=torch.int64)
    for j in range(x.shape[-1]):  # one element of the sub-vectors at a time: memory (G, N, K)
        diff = x[..., j].unsqueeze(2) - codebook[..., j].unsqueeze(1)  # (G, N, K)
        total = total + diff * diff
    return total


METRICS.register("l2")(Metric("l2", l2_distance, l2_int_distance, l2_search))
