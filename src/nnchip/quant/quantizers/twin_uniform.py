"""Twin-uniform quantizer (PTQ4ViT, Yuan et al., arXiv 2111.12293) for post-softmax and post-GELU values.

Two uniform ranges share one b-bit code: a fine step Δ1 for small values and a coarse step Δ2 = 2^k·Δ1.
  softmax mode (unsigned, 1 flag bit + (b−1)-bit magnitude m, M = 2^(b−1) − 1):
      x < M·Δ1 + Δ1/2 → m·Δ1 (fine), otherwise m·Δ2 (coarse)
  gelu mode (signed): negative values on the fine grid (−M·Δ1 … 0), non-negative on the coarse grid
Integer form on the fine step: q = m (fine) or m·2^k (coarse), so every value is an integer multiple of
Δ1 (the scale) and grid.values lists them. Calibration picks k ∈ 0…8 by MSE on a sample of the data;
Δ2 comes from the observed maximum. Code → value: flag bit 0 → m, flag bit 1 → m·2^k (k is exported).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.observers.sampling import append_sample
from nnchip.quant.registry import register_quantizer


@register_quantizer("twin_uniform")
class TwinUniformQuantizer(Quantizer):
    """Options: `mode` "softmax" (default) or "gelu"."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.role != "act" or not 3 <= self.spec.bits <= 8:
            raise ConfigError(f"bits: quantizer 'twin_uniform' is for activations with 3..8 bits, got {self.spec.bits}")
        self.mode = str(self.spec.option("mode", "softmax"))
        if self.mode not in ("softmax", "gelu"):
            raise ConfigError(f"options.mode of 'twin_uniform' must be 'softmax' or 'gelu', got {self.mode!r}")
        self.register_buffer("shift", torch.tensor(3))  # k: Δ2 = 2^k·Δ1
        self.samples: Tensor | None = None
        self._generator = torch.Generator().manual_seed(0)

    @property
    def magnitude_max(self) -> int:
        return 2 ** (self.spec.bits - 1) - 1

    @property
    def grid(self) -> IntGrid:
        m = range(self.magnitude_max + 1)
        coarse = {v * 2 ** int(self.shift) for v in m}
        fine = {-v for v in m} if self.mode == "gelu" else set(m)
        values = tuple(sorted(coarse | fine))
        bits = max(abs(v) for v in values).bit_length() + (1 if self.mode == "gelu" else 0)
        return IntGrid(IntSpec(bits, signed=self.mode == "gelu"), Encoding.TWOS_COMPLEMENT, values,
                       code_bits=self.spec.bits)

    def forward(self, x: Tensor) -> Tensor:
        if self.calibrating:
            self.samples = append_sample(self.samples, x.detach().reshape(1, -1).float(), self._generator)
        return super().forward(x)

    def _quantize(self, x: Tensor, fine: Tensor, shift: int) -> Tensor:
        coarse = fine * 2**shift
        m = self.magnitude_max
        coarse_q = torch.clamp(torch.round(x / coarse), 0, m) * 2**shift
        if self.mode == "gelu":
            fine_q = torch.clamp(torch.round(x / fine), -m, 0)
            return torch.where(x < 0, fine_q, coarse_q)
        fine_q = torch.clamp(torch.round(x / fine), 0, m)
        return torch.where(x < (m + 0.5) * fine, fine_q, coarse_q)

    def initialize_from_range(self, lo: Tensor, hi: Tensor) -> None:
        data = self.samples if self.samples is not None else torch.stack([lo.reshape(()), hi.reshape(())])[None]
        top = torch.clamp(hi.max(), min=1e-8)
        best: tuple[float, int, Tensor] | None = None
        for shift in range(0, 9):
            fine = top / (self.magnitude_max * 2**shift)
            err = float(((self._quantize(data, fine, shift) * fine - data) ** 2).sum())
            if best is None or err < best[0]:
                best = (err, shift, fine)
        assert best is not None
        self.shift.fill_(best[1])
        self.set_params(best[2].reshape(self.scale.shape), torch.zeros_like(self.zero_point))
        self.samples = None

    def fake_quant(self, x: Tensor) -> Tensor:
        target = self._quantize(x, self.get_scale(), int(self.shift)) * self.get_scale()
        return x + (target - x).detach()

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return self._quantize(x, self.get_scale(), int(self.shift))
