"""EMA min-max observer: lo_t = m·lo_{t−1} + (1 − m)·min(batch), same for hi (I-ViT keeps m = 0.95)."""

from __future__ import annotations

from torch import Tensor

from nnchip.quant.observers.base import Observer
from nnchip.quant.registry import register_observer


@register_observer("ema")
class EMAMinMaxObserver(Observer):
    """Option `momentum` (default 0.95): the weight of the running value at each update."""

    def update(self, x: Tensor) -> None:
        lo, hi = self.reduce_min_max(x)
        momentum = float(self.options.get("momentum", 0.95))
        if int(self.count) == 0:
            self.lo, self.hi = lo.clone(), hi.clone()
        else:
            self.lo = momentum * self.lo + (1 - momentum) * lo
            self.hi = momentum * self.hi + (1 - momentum) * hi
