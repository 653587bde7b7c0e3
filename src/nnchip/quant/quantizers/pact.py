"""PACT (Choi et al., arXiv 1805.06085): a learned clip α for non-negative activations.

    y = clip(x, 0, α),   s = α / (2^b − 1),   x̂ = s·round(y / s)        (zero point 0, unsigned)
    ∂x̂/∂α = 1 where x ≥ α (plus the step's rounding term), ∂x̂/∂x = 1 on [0, α)
α starts at the observer's upper range (the paper starts at 10; calibration gives a better start).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.core.intspec import IntSpec
from nnchip.core.qmath import round_ste
from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("pact")
class PACTQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.alpha = nn.Parameter(torch.full_like(self.scale, 10.0))

    @property
    def int_spec(self) -> IntSpec:
        return IntSpec(self.spec.bits, signed=False)

    @property
    def symmetric(self) -> bool:
        return True

    def set_params(self, scale: Tensor, zero_point: Tensor) -> None:
        super().set_params(scale, torch.zeros_like(zero_point))
        with torch.no_grad():
            self.alpha.data = (self.scale * self.grid.qmax).clone()

    def get_scale(self) -> Tensor:
        return self.alpha.abs() / self.grid.qmax + 1e-12

    def fake_quant(self, x: Tensor) -> Tensor:
        alpha = self.alpha.abs() + 1e-12
        y = 0.5 * (x.abs() - (x - alpha).abs() + alpha)  # clip(x, 0, α) with PACT's α-gradient
        step = alpha / self.grid.qmax
        return round_ste(y / step) * step
