"""MSE / Lp search: try N shrunken clips α_i = (1 − i/N)·range and keep the one that minimises ‖Q(x) − x‖_p^p.

Torch2Chip and BRECQ use p = 2.4 and N = 100; the search runs per channel for per-channel quantizers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.qmath import quantize_affine, range_to_scale_zero_point
from nnchip.quant.observers.sampling import SamplingObserver
from nnchip.quant.registry import register_observer


@register_observer("mse")
class MSEObserver(SamplingObserver):
    """Options: `norm` (p, default 2.4), `candidates` (N, default 100)."""

    def range_for(self, grid: object, symmetric: bool) -> tuple[Tensor, Tensor]:
        lo, hi = self.range()
        assert self.samples is not None
        qmin, qmax = grid.qmin, grid.qmax  # type: ignore[attr-defined]
        p = float(self.options.get("norm", 2.4))
        n = int(self.options.get("candidates", 100))
        rows = self.samples  # (C, n)
        lo_rows, hi_rows = lo.reshape(-1, 1), hi.reshape(-1, 1)
        best_err = torch.full((rows.shape[0], 1), float("inf"))
        best = torch.ones_like(best_err)
        for i in range(n):
            factor = 1.0 - i / n
            scale, zp = range_to_scale_zero_point(lo_rows * factor, hi_rows * factor, qmin, qmax, symmetric=symmetric)
            approx = scale * (quantize_affine(rows, scale, zp, qmin, qmax) - zp)
            err = (approx - rows).abs().pow(p).sum(dim=1, keepdim=True)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, torch.full_like(best, factor), best)
        return lo * best.reshape(lo.shape), hi * best.reshape(hi.shape)
