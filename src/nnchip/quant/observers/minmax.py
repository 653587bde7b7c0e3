"""Min-max observer: the running minimum and maximum over all calibration batches."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.quant.observers.base import Observer
from nnchip.quant.registry import register_observer


@register_observer("minmax")
class MinMaxObserver(Observer):
    def update(self, x: Tensor) -> None:
        lo, hi = self.reduce_min_max(x)
        if int(self.count) == 0:
            self.lo, self.hi = lo.clone(), hi.clone()
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
