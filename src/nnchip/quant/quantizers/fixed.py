"""Fixed-scale quantizer: a grid chosen by the integer contract, not by data (e.g. softmax output 2^-(b-1)).

Its input may come from a producer that already computes integers on this grid (the integer softmax of the
fake-quant forward, nnchip.quant.nonlinear): linked with `link_grid_source`, the quantizer passes such values
through, since rounding them is the identity in value and its straight-through gradient is 1 everywhere.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


class GridSource(Protocol):
    def output_on_grid(self, scale: float, qmin: int, qmax: int) -> bool: ...


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

    def link_grid_source(self, source: GridSource) -> None:
        """Remember (not as a submodule: it stays where it is in the graph) the module whose output this reads."""
        self.__dict__["_grid_source"] = source

    def forward(self, x: Tensor) -> Tensor:
        source: GridSource | None = self.__dict__.get("_grid_source")
        if self.enabled and not self.calibrating and source is not None and self.scale.numel() == 1:
            grid = self.grid
            if source.output_on_grid(float(self.scale), grid.qmin, grid.qmax) and float(self.zero_point) == 0.0:
                return x
        return super().forward(x)
