"""Distance metrics of vector quantization, registered by name (one file each).

A metric is a `Metric` object with three pure functions on sub-vectors:
    distance(x, codebook)      float, differentiable: x (G, N, v), codebook (G, K, v) -> (G, N, K)
    int_distance(x, codebook)  exact integers (int64): same shapes; the nearest centroid minimises it
    search(x, codebook)        nearest indices (G, N) by the float distance, for searches without gradient: the
                               same argmin as `distance` up to float rounding, computed more cheaply where a
                               monotone transform allows (L2: ‖p‖² − 2·p·x); ties -> the lowest index
`int_distance` is monotone in `distance` on integer inputs (L2 drops the square root), so both pick the same
centroid up to float rounding. Nearest-centroid ties are broken by the lowest index (`nearest_index`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nnchip.core.registry import Registry


@dataclass(frozen=True)
class Metric:
    """A named distance: `distance` (float, differentiable), `int_distance` (exact int64), `search` (no gradient)."""

    name: str
    distance: Callable[[Tensor, Tensor], Tensor]
    int_distance: Callable[[Tensor, Tensor], Tensor]
    fast_search: Callable[[Tensor, Tensor], Tensor] | None = None

    def search(self, x: Tensor, codebook: Tensor) -> Tensor:
        """Nearest indices (G, N) of x (G, N, v) in codebook (G, K, v), without gradient.

        Runs over blocks of SEARCH_BLOCK sub-vectors so that the (G, block, K) distances stay in cache instead of
        materialising (G, N, K); every index is computed exactly as on the whole tensor."""
        search = self.fast_search or (lambda part, book: nearest_index(self.distance(part, book)))
        out = torch.empty(x.shape[0], x.shape[1], dtype=torch.int64)
        for start in range(0, x.shape[1], SEARCH_BLOCK):
            out[:, start:start + SEARCH_BLOCK] = search(x[:, start:start + SEARCH_BLOCK], codebook)
        return out


METRICS: Registry[Metric] = Registry("vq metric")
SEARCH_BLOCK = 4096  # sub-vectors per block of `Metric.search`


def nearest_index(distances: Tensor) -> Tensor:
    """Index of the smallest distance along the last axis; ties go to the lowest index (torch's argmin rule)."""
    return torch.argmin(distances, dim=-1)


def int_bound(metric: str, v: int, span: int) -> int:
    """Largest integer distance of two length-v sub-vectors whose elements differ by at most `span`."""
    if metric == "l2":
        return v * span * span
    if metric == "l1":
        return v * span
    return span


from nnchip.vq.metrics import chebyshev, l1, l2  # noqa: E402,F401  (explicit registration)
