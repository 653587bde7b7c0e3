"""SAWB (Choi et al., SysML 2019, arXiv 1807.06964): weight clip in closed form from two moments.

    α* = c1·sqrt(E[w²]) + c2·E|w|,   s = α* / (2^(b−1) − 1),   w_q = s·round(clip(w, −α*, α*)/s)
Coefficients per bit-width as in the public implementations (algorithms.md §2.4); per output channel when
the spec asks for it. The clip is recomputed from the current weights at every forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer

COEFFICIENTS = {2: (3.19, -2.14), 3: (7.40, -6.66), 4: (11.86, -11.68), 5: (17.08, -17.66), 6: (22.49, -23.95),
                7: (28.68, -31.24), 8: (32.27, -35.46), 16: (34.26, -37.60)}


@register_quantizer("sawb")
class SAWBQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.role != "weight":
            raise ConfigError("quantizer 'sawb' is for weights only")
        if self.spec.bits not in COEFFICIENTS:
            raise ConfigError(f"bits: quantizer 'sawb' has coefficients for {sorted(COEFFICIENTS)} bits, "
                              f"not {self.spec.bits}")

    def initialize_from_tensor(self, x: Tensor) -> None:
        c1, c2 = COEFFICIENTS[self.spec.bits]
        dims = [d for d in range(x.dim()) if d != self.channel_axis] if self.channel_axis is not None else None
        w = x.detach()
        rms = w.pow(2).mean(dim=dims, keepdim=True).sqrt() if dims else w.pow(2).mean().sqrt()
        mean_abs = w.abs().mean(dim=dims, keepdim=True) if dims else w.abs().mean()
        alpha = torch.clamp(c1 * rms + c2 * mean_abs, min=1e-8)
        alpha = torch.minimum(alpha, w.abs().amax(dim=dims, keepdim=True) if dims else w.abs().max())
        self.set_params(alpha / self.grid.qmax, torch.zeros_like(alpha))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.enabled and not self.calibrating:
            self.initialize_from_tensor(x)
        return super().forward(x)
