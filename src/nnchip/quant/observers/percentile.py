"""Percentile observer: clip each tail at the p-th percentile of the observed values (default 99.99)."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.quant.observers.base import Observer
from nnchip.quant.observers.sampling import append_sample, flatten_per_channel
from nnchip.quant.registry import register_observer


@register_observer("percentile")
class PercentileObserver(Observer):
    """Option `percentile` in (50, 100]: hi = q_p(x), lo = q_{100−p}(x) over a bounded sample of the data."""

    def __init__(self, channel_axis: int | None = None, **options: float) -> None:
        super().__init__(channel_axis, **options)
        self.samples: Tensor | None = None
        self._generator = torch.Generator().manual_seed(0)

    def update(self, x: Tensor) -> None:
        lo, hi = self.reduce_min_max(x)
        self.samples = append_sample(self.samples, flatten_per_channel(x.float(), self.channel_axis), self._generator)
        self.lo, self.hi = lo, hi  # shape template; range() computes the percentiles

    def range(self) -> tuple[Tensor, Tensor]:
        lo_template, _ = super().range()
        p = float(self.options.get("percentile", 99.99))
        if not 50.0 < p <= 100.0:
            from nnchip.core.errors import ConfigError

            raise ConfigError(f"percentile must be in (50, 100], got {p}")
        assert self.samples is not None
        hi = torch.quantile(self.samples, p / 100.0, dim=1)
        lo = torch.quantile(self.samples, 1.0 - p / 100.0, dim=1)
        return lo.reshape(lo_template.shape), hi.reshape(lo_template.shape)
