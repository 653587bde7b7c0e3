"""Static uniform quantizer: scale and zero point fixed by an observer (PTQ, and QAT of weights by re-observing).

This is the base class registered under the name "minmax": the range rule comes from the spec's
observer ("minmax", "ema", "percentile", "mse"), so "minmax" here means "static, observer-driven".
For weights in training mode the range is re-observed from the current weights at every forward
(the grid follows the weights, as in Torch2Chip's static weight quantizers).
"""

from __future__ import annotations

from torch import Tensor

from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("minmax")
class UniformQuantizer(Quantizer):
    def forward(self, x: Tensor) -> Tensor:
        if self.role == "weight" and self.training and self.enabled and not self.calibrating:
            self.initialize_from_tensor(x)
        return super().forward(x)
