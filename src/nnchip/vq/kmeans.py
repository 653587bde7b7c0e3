"""k-means initialisation of product-quantization codebooks, all codebooks at once (Lloyd iterations).

Assignment uses the layer's own metric (L2, L1 or Chebyshev); the update is the cluster mean for every
metric (for L1 the median would be optimal — the fine-tuning stages correct the difference). Centroids
start at K distinct random samples; a cluster that empties is re-seeded at a random sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import DataError
from nnchip.vq.metrics import METRICS, nearest_index


def kmeans(samples: Tensor, k: int, metric: str, iters: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """samples (C, N, v) -> (centroids (C, K, v), distance of every sample to its centroid (C, N))."""
    c, n, v = samples.shape
    if n < k:
        raise DataError(f"k-means needs at least K = {k} calibration sub-vectors per codebook, got {n}")
    distance = METRICS.get(metric).distance
    samples = samples.detach().float()
    start = torch.randperm(n, generator=generator)[:k]
    centroids = samples[:, start].clone()  # (C, K, v)
    for _ in range(iters):
        index = nearest_index(distance(samples, centroids))  # (C, N)
        sums = torch.zeros(c, k, v).scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, v), samples)
        counts = torch.zeros(c, k).scatter_add_(1, index, torch.ones(c, n))
        reseed = samples[:, torch.randint(n, (k,), generator=generator)]  # (C, K, v)
        centroids = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), reseed)
    nearest = distance(samples, centroids).amin(dim=-1)  # (C, N)
    return centroids, nearest
