"""Fixed-scale quantizer: a grid chosen by the integer contract, not by data (e.g. softmax output 2^-(b-1))."""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("fixed")
class FixedQuantizer(Quantizer):
    """Scale = 2^-frac_bits (option `frac_bits`, default bits − 1), zero point 0; observers are ignored."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        frac_bits = int(self.spec.option("frac_bits", self.spec.bits - 1))
        self.set_params(torch.full_like(self.scale, 2.0**-frac_bits), torch.zeros_like(self.zero_point))

    def initialize_from_range(self, lo: Tensor, hi: Tensor) -> None:
        return None

    def initialize_from_tensor(self, x: Tensor) -> None:
        return None

    def finish_calibration(self) -> None:
        self.calibrating = False
