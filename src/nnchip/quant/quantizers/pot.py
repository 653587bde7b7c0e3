"""Power-of-two weights: values 0 and ±2^k, so a multiply becomes a shift.

A b-bit code is a sign bit and a (b−1)-bit exponent field e: e = 0 → 0, e ≥ 1 → ±2^(e−1)
(POWER_OF_TWO encoding). With E = 2^(b−1) − 1 exponents the integer values are
{0, ±1, ±2, …, ±2^(E−1)} and the scale is α / 2^(E−1), α = max|w| per channel (or per tensor).
Each weight goes to the nearest level (ties to the larger magnitude); STE backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("pot")
class PowerOfTwoQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not 2 <= self.spec.bits <= 5:
            raise ConfigError(f"bits: quantizer 'pot' supports 2..5 bits (values up to 2^14), got {self.spec.bits}")
        if self.role != "weight":
            raise ConfigError("quantizer 'pot' is for weights only")

    @property
    def exponents(self) -> int:
        return 2 ** (self.spec.bits - 1) - 1

    @property
    def grid(self) -> IntGrid:
        magnitudes = [0] + [2**k for k in range(self.exponents)]
        values = tuple(sorted({s * m for m in magnitudes for s in (-1, 1)}))
        return IntGrid(IntSpec(self.exponents + 1, signed=True, narrow=True), Encoding.POWER_OF_TWO, values,
                       code_bits=self.spec.bits)

    def initialize_from_tensor(self, x: Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != self.channel_axis] if self.channel_axis is not None else None
        amax = x.detach().abs().amax(dim=dims, keepdim=True) if dims else x.detach().abs().max()
        scale = torch.clamp(amax, min=1e-12) / 2 ** (self.exponents - 1)
        self.set_params(scale, torch.zeros_like(scale))

    def _levels(self, x: Tensor) -> Tensor:
        magnitude = x.abs() / self.get_scale()
        levels = torch.tensor([0.0] + [2.0**k for k in range(self.exponents)], dtype=x.dtype, device=x.device)
        midpoints = (levels[1:] + levels[:-1]) / 2
        index = torch.bucketize(magnitude, midpoints, right=True)  # ties → the larger level
        return torch.sign(x) * levels[index]

    def fake_quant(self, x: Tensor) -> Tensor:
        target = self._levels(x) * self.get_scale()
        return x + (target - x).detach()

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return self._levels(x)
