"""Observers that need the distribution, not just its range: running min/max plus a bounded sample."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.quant.observers.minmax import MinMaxObserver

MAX_SAMPLES = 1 << 18


def flatten_per_channel(x: Tensor, channel_axis: int | None) -> Tensor:
    """(C, n) rows per channel, or (1, n) for per-tensor statistics."""
    if channel_axis is None:
        return x.reshape(1, -1)
    axis = channel_axis % x.dim()
    return x.transpose(0, axis).reshape(x.shape[axis], -1)


def append_sample(store: Tensor | None, rows: Tensor, generator: torch.Generator) -> Tensor:
    """Concatenate along columns, keeping at most MAX_SAMPLES columns by deterministic random thinning."""
    merged = rows if store is None or store.numel() == 0 else torch.cat([store, rows], dim=1)
    if merged.shape[1] > MAX_SAMPLES:
        keep = torch.randperm(merged.shape[1], generator=generator)[:MAX_SAMPLES]
        merged = merged[:, keep.sort().values]
    return merged


class SamplingObserver(MinMaxObserver):
    """Min-max observer that also keeps up to MAX_SAMPLES values per channel (`samples`, shape (C, n))."""

    def __init__(self, channel_axis: int | None = None, **options: float) -> None:
        super().__init__(channel_axis, **options)
        self.samples: Tensor | None = None
        self._generator = torch.Generator().manual_seed(0)

    def update(self, x: Tensor) -> None:
        if int(self.count) == 0:
            self.samples = None
        super().update(x)
        self.samples = append_sample(self.samples, flatten_per_channel(x.float(), self.channel_axis), self._generator)
