"""k-means initialisation of product-quantization codebooks, all codebooks at once (Lloyd iterations).

Assignment uses the layer's own metric (L2, L1 or Chebyshev); the update is the cluster mean for every
metric (for L1 the median would be optimal — the fine-tuning stages correct the difference). Seeding
(`init`): "random" starts at K distinct random samples; "kmeans++" (Arthur & Vassilvitskii) picks the first
centroid uniformly and each next one with probability ∝ d(x)², d = the metric's distance to the nearest
centroid chosen so far, independently per codebook. A cluster that empties is re-seeded at a random sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import DataError
from nnchip.vq.metrics import METRICS, nearest_index

INITS = ("random", "kmeans++")


def kmeans_plus_plus(samples: Tensor, k: int, metric: str, generator: torch.Generator) -> Tensor:
    """samples (C, N, v) -> K seeds per codebook (C, K, v) by D² sampling under `metric`."""
    c, n, _ = samples.shape
    distance = METRICS.get(metric).distance
    rows = torch.arange(c)
    chosen = [samples[rows, torch.randint(n, (c,), generator=generator)]]  # [(C, v)]
    closest = distance(samples, chosen[0].unsqueeze(1)).squeeze(-1)  # (C, N)
    for _ in range(1, k):
        weights = closest.pow(2)
        weights = torch.where(weights.sum(dim=1, keepdim=True) > 0, weights, torch.ones_like(weights))
        pick = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (C,)
        chosen.append(samples[rows, pick])
        closest = torch.minimum(closest, distance(samples, chosen[-1].unsqueeze(1)).squeeze(-1))
    return torch.stack(chosen, dim=1)


def kmeans(samples: Tensor, k: int, metric: str, iters: int, generator: torch.Generator, *,
           init: str = "random") -> tuple[Tensor, Tensor]:
    """samples (C, N, v) -> (centroids (C, K, v), distance of every sample to its centroid (C, N))."""
    c, n, v = samples.shape
    if n < k:
        raise DataError(f"k-means needs at least K = {k} calibration sub-vectors per codebook, got {n}")
    distance = METRICS.get(metric).distance
    samples = samples.detach().float()
    if init == "kmeans++":
        centroids = kmeans_plus_plus(samples, k, metric, generator)  # (C, K, v)
    else:
        centroids = samples[:, torch.randperm(n, generator=generator)[:k]].clone()  # (C, K, v)
    for _ in range(iters):
        index = nearest_index(distance(samples, centroids))  # (C, N)
        sums = torch.zeros(c, k, v).scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, v), samples)
        counts = torch.zeros(c, k).scatter_add_(1, index, torch.ones(c, n))
        reseed = samples[:, torch.randint(n, (k,), generator=generator)]  # (C, K, v)
        centroids = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), reseed)
    nearest = distance(samples, centroids).amin(dim=-1)  # (C, N)
    return centroids, nearest
