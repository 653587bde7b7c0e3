"""DoReFa (Zhou et al., arXiv 1606.06160) weights and activations.

weights, b ≥ 2:  u = tanh(w) / (2·max|tanh w|) + 1/2 ∈ [0, 1];  c = round((2^b − 1)·u) ∈ [0, 2^b − 1];
                 w_q = (2c − (2^b − 1)) / (2^b − 1): odd integers on a MIDRISE grid, scale 1/(2^b − 1)
weights, b = 1:  w_q = E|w|·sign(w)  (values ±1, BIPOLAR, scale E|w|)
activations:     x_q = round((2^b − 1)·clip(x, 0, 1)) / (2^b − 1)  (unsigned, scale 1/(2^b − 1))
All rounding uses the STE. The weight function is not the identity: DoReFa weights need QAT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.intspec import Encoding, IntSpec
from nnchip.core.qmath import round_ste
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("dorefa")
class DoReFaQuantizer(Quantizer):
    @property
    def levels(self) -> int:
        return 2**self.spec.bits - 1

    @property
    def grid(self) -> IntGrid:
        if self.role == "act":
            return IntGrid(IntSpec(self.spec.bits, signed=False))
        if self.spec.bits == 1:
            return IntGrid(IntSpec(2, signed=True, narrow=True), Encoding.BIPOLAR, (-1, 1), code_bits=1)
        values = tuple(2 * c - self.levels for c in range(self.levels + 1))
        return IntGrid(IntSpec(self.spec.bits + 1, signed=True, narrow=True), Encoding.MIDRISE, values,
                       code_bits=self.spec.bits)

    def initialize_from_range(self, lo: Tensor, hi: Tensor) -> None:
        self._fix_scale()

    def initialize_from_tensor(self, x: Tensor) -> None:
        if self.role == "weight" and self.spec.bits == 1:
            self.set_params(x.detach().abs().mean().reshape(()).expand_as(self.scale).clone(),
                            torch.zeros_like(self.zero_point))
        else:
            self._fix_scale()

    def _fix_scale(self) -> None:
        self.set_params(torch.full_like(self.scale, 1.0 / self.levels), torch.zeros_like(self.zero_point))

    def fake_quant(self, x: Tensor) -> Tensor:
        if self.role == "act":
            return round_ste(torch.clamp(x, 0.0, 1.0) * self.levels) / self.levels
        if self.spec.bits == 1:
            alpha = x.abs().mean().detach()
            sign = torch.where(x >= 0, 1.0, -1.0)
            return alpha * (x + (sign - x).detach())
        t = torch.tanh(x)
        u = t / (2 * t.abs().max().detach()) + 0.5
        return (2 * round_ste(u * self.levels) - self.levels) / self.levels

    def forward(self, x: Tensor) -> Tensor:
        if self.role == "weight" and self.spec.bits == 1 and self.enabled and not self.calibrating:
            self.initialize_from_tensor(x)
        return super().forward(x)

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return torch.round(self.fake_quant(x) / self.get_scale())
