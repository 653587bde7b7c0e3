"""LSQ — Learned Step Size Quantization (Esser et al., ICLR 2020, arXiv 1902.08153).

    v̄ = round(clip(v/s + z, qmin, qmax));  v̂ = s·(v̄ − z)          (z = 0 for weights)
    ∂v̂/∂s = round(v/s) − v/s inside the range, qmin − z / qmax − z outside      (via the STE)
    gradient scale g = 1 / sqrt(N · Q_P), applied as s_used = sg(s − s·g) + s·g
Initialisation: from the observer's range (calibration data for activations, the weight itself for
weights), which is at least as good as the paper's 2·mean|v|/sqrt(Q_P) and keeps PTQ → QAT continuous.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnchip.core.qmath import fake_quantize_affine, grad_scale
from nnchip.quant.base import Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("lsq")
class LSQQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.step = nn.Parameter(self.scale.clone())

    def set_params(self, scale: Tensor, zero_point: Tensor) -> None:
        super().set_params(scale, zero_point)
        with torch.no_grad():
            self.step.data = self.scale.clone()

    def get_scale(self) -> Tensor:
        return self.step.abs() + 1e-12

    def fake_quant(self, x: Tensor) -> Tensor:
        if self.training:
            per_scale = max(1, x.numel() // max(1, self.step.numel()))
            factor = 1.0 / math.sqrt(per_scale * max(1, self.grid.qmax))
            step = grad_scale(self.get_scale(), factor)
        else:
            step = self.get_scale()
        grid = self.grid
        return fake_quantize_affine(x, step, self.get_zero_point(), grid.qmin, grid.qmax)
