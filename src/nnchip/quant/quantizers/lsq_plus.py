"""LSQ+ (Bhalgat et al., CVPR-W 2020, arXiv 2004.09576): LSQ with a learnable offset β for activations.

    x̂ = s·(clip(round(x/s) + z, qmin, qmax) − z),   z = clip(round_ste(−β/s), qmin, qmax)
The offset is learned as a real number but enters the forward only through the rounded integer zero
point z (rounding STE), so the exported model keeps an integer zero point (integer-semantics §2).
Initialisation: s and z from the observer's range (the paper's min/max initialisation), β = −z·s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnchip.core.qmath import fake_quantize_affine, grad_scale, round_ste
from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("lsq+")
class LSQPlusQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.step = nn.Parameter(self.scale.clone())
        if self.symmetric:  # weights and symmetric activations: zero point fixed at 0, nothing to learn
            self.register_buffer("offset", torch.zeros_like(self.zero_point))
        else:
            self.offset = nn.Parameter(torch.zeros_like(self.zero_point))

    def set_params(self, scale: Tensor, zero_point: Tensor) -> None:
        super().set_params(scale, zero_point)
        with torch.no_grad():
            self.step.data = self.scale.clone()
            self.offset.data = -self.zero_point * self.scale

    def get_scale(self) -> Tensor:
        return self.step.abs() + 1e-12

    def _zero_point(self, step: Tensor) -> Tensor:
        if self.symmetric:
            return torch.zeros_like(self.offset)
        grid = self.grid
        return torch.clamp(round_ste(-self.offset / step), grid.qmin, grid.qmax)

    def get_zero_point(self) -> Tensor:
        return self._zero_point(self.get_scale()).detach()

    def fake_quant(self, x: Tensor) -> Tensor:
        grid = self.grid
        step = self.get_scale()
        if self.training:
            per_scale = max(1, x.numel() // max(1, self.step.numel()))
            step = grad_scale(step, 1.0 / math.sqrt(per_scale * max(1, grid.qmax)))
        return fake_quantize_affine(x, step, self._zero_point(step), grid.qmin, grid.qmax)
