"""Binary weights (BinaryConnect / XNOR-Net weights): w_b = α·sign(w), sign(0) = +1, α = mean|w| per channel.

Integer values ±1 (BIPOLAR encoding: stored bit 1 ↔ +1, 0 ↔ −1), scale α. Backward: clipped STE,
dL/dw = dL/dw_b · α · 1{|w| ≤ 1}; α receives its own gradient through the mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer


def _mean_abs(x: Tensor, channel_axis: int | None) -> Tensor:
    if channel_axis is None:
        return x.abs().mean()
    dims = [d for d in range(x.dim()) if d != channel_axis]
    return x.abs().mean(dim=dims, keepdim=True)


@register_quantizer("binary")
class BinaryQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.spec.bits != 1:
            raise ConfigError(f"bits: quantizer 'binary' needs bits 1, got {self.spec.bits}")
        if self.role != "weight":
            raise ConfigError("quantizer 'binary' is for weights only")

    @property
    def grid(self) -> IntGrid:
        return IntGrid(IntSpec(2, signed=True, narrow=True), Encoding.BIPOLAR, (-1, 1), code_bits=1)

    def initialize_from_tensor(self, x: Tensor) -> None:
        alpha = torch.clamp(_mean_abs(x.detach(), self.channel_axis), min=1e-12)
        self.set_params(alpha, torch.zeros_like(alpha))

    def fake_quant(self, x: Tensor) -> Tensor:
        alpha = torch.clamp(_mean_abs(x, self.channel_axis), min=1e-12)
        sign = torch.where(x >= 0, 1.0, -1.0)
        clipped = torch.clamp(x, -1.0, 1.0)
        return alpha * (clipped + (sign - clipped).detach())

    def forward(self, x: Tensor) -> Tensor:
        if self.enabled and not self.calibrating:
            self.initialize_from_tensor(x)  # α follows the latent weights
        return super().forward(x)

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, 1.0, -1.0)
