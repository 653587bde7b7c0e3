"""Ternary weights (TWN, Li et al., arXiv 1605.04711): {−α, 0, +α} per output channel.

    Δ = 0.7·E|w|,  t = sign(w)·1{|w| > Δ},  α = mean(|w| : |w| > Δ),  w_t = α·t
Integer values {−1, 0, +1} (TERNARY encoding: 2-bit two's complement codes), scale α; STE backward.
Option `threshold` replaces the 0.7 factor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("ternary")
class TernaryQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.spec.bits != 2:
            raise ConfigError(f"bits: quantizer 'ternary' needs bits 2, got {self.spec.bits}")
        if self.role != "weight":
            raise ConfigError("quantizer 'ternary' is for weights only")

    @property
    def grid(self) -> IntGrid:
        return IntGrid(IntSpec(2, signed=True, narrow=True), Encoding.TERNARY, (-1, 0, 1))

    def _ternarize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dims = [d for d in range(x.dim()) if d != self.channel_axis] if self.channel_axis is not None else None
        mean_abs = x.abs().mean(dim=dims, keepdim=True) if dims else x.abs().mean()
        delta = float(self.spec.option("threshold", 0.7)) * mean_abs
        mask = (x.abs() > delta).to(x.dtype)
        kept = (x.abs() * mask).sum(dim=dims, keepdim=True) if dims else (x.abs() * mask).sum()
        count = mask.sum(dim=dims, keepdim=True) if dims else mask.sum()
        alpha = torch.clamp(kept / torch.clamp(count, min=1.0), min=1e-12)
        return torch.sign(x) * mask, alpha

    def initialize_from_tensor(self, x: Tensor) -> None:
        _, alpha = self._ternarize(x.detach())
        self.set_params(alpha, torch.zeros_like(alpha))

    def fake_quant(self, x: Tensor) -> Tensor:
        codes, alpha = self._ternarize(x)
        target = alpha.detach() * codes
        return x + (target - x).detach()

    def forward(self, x: Tensor) -> Tensor:
        if self.enabled and not self.calibrating:
            self.initialize_from_tensor(x)
        return super().forward(x)

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return self._ternarize(x)[0]
