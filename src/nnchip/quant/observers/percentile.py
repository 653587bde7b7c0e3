"""Percentile observer: clip each tail at the p-th percentile of the observed values (default 99.99)."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.quant.observers.sampling import SamplingObserver
from nnchip.quant.registry import register_observer


@register_observer("percentile")
class PercentileObserver(SamplingObserver):
    """Option `percentile` in (50, 100]: hi = q_p(x), lo = q_{100−p}(x) over a bounded sample of the data."""

    def range(self) -> tuple[Tensor, Tensor]:
        lo_template, _ = super().range()
        p = float(self.options.get("percentile", 99.99))
        if not 50.0 < p <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {p}")
        assert self.samples is not None
        hi = torch.quantile(self.samples, p / 100.0, dim=1)
        lo = torch.quantile(self.samples, 1.0 - p / 100.0, dim=1)
        return lo.reshape(lo_template.shape), hi.reshape(lo_template.shape)
