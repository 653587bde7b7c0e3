"""ESB — elastic significant bits (Gong et al., IEEE TPDS, arXiv 2109.03513): weights with at most k
significant bits, so a multiply is k shift-and-adds on LUTs instead of a DSP.

A b-bit code is a sign bit, an e-bit exponent field E and an m-bit mantissa field M (b = 1 + e + m; the
option `significant_bits` k = m + 1, default b − 2). Integer magnitude (ESB encoding):
    E = 0  →  M                       (the uniform region near zero: 0 … 2^m − 1)
    E ≥ 1  →  (2^m + M) · 2^(E − 1)   (k significant bits, octave E − 1)
So the magnitudes are 0 … 2^(m+1) − 1 in steps of 1, then each octave [2^(m+n), 2^(m+n+1)) in steps of 2^n,
n = 1 … 2^e − 2: a small float whose sub-normal range is merged with its first octave. k = 1 is power-of-two
(the `pot` value set), k = b − 1 is b-bit sign-magnitude fixed point. The value set follows the authors'
reference quantizer (exponent index clipped to [0, 2^e − 2], uniform step 2^(n − m) within octave n).
Scale: the DDA step of the paper as a 1-D search — α = s·max|w| per channel (or tensor) with s on a grid in
[0.5, 1], keeping the s that minimises the squared error of the projection. Nearest level, ties to the
larger magnitude; STE backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec, esb_magnitudes
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer

SEARCH_STEPS = 26  # candidate clipping ratios in [0.5, 1]


@register_quantizer("esb")
class ESBQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.role != "weight":
            raise ConfigError("quantizer 'esb' is for weights only")
        bits = self.spec.bits
        k = int(self.spec.option("significant_bits", max(1, bits - 2)))
        if bits < 2 or not 1 <= k <= bits - 1:
            raise ConfigError(f"quantizer 'esb': significant_bits must be in 1..{bits - 1} for {bits} bits, got {k}")
        self.mantissa_bits, self.exponent_bits = k - 1, bits - k
        if self.max_magnitude >= 2**15:
            raise ConfigError(f"quantizer 'esb': {bits} bits with {k} significant bits reach magnitude "
                              f"{self.max_magnitude} (at most 2^15 − 1); use more significant bits or fewer bits")

    @property
    def max_magnitude(self) -> int:
        return max(esb_magnitudes(self.exponent_bits, self.mantissa_bits))

    @property
    def grid(self) -> IntGrid:
        magnitudes = esb_magnitudes(self.exponent_bits, self.mantissa_bits)
        values = tuple(sorted({s * v for v in magnitudes for s in (-1, 1)}))
        value_bits = self.max_magnitude.bit_length() + 1
        return IntGrid(IntSpec(value_bits, signed=True, narrow=True), Encoding.ESB, values, code_bits=self.spec.bits)

    def _levels(self) -> Tensor:
        return torch.tensor(sorted(set(esb_magnitudes(self.exponent_bits, self.mantissa_bits))), dtype=torch.float32)

    def _project(self, x: Tensor, scale: Tensor) -> Tensor:
        """Integer levels nearest to x / scale (ties to the larger magnitude)."""
        levels = self._levels().to(x.device, x.dtype)
        index = torch.bucketize(x.abs() / scale, (levels[1:] + levels[:-1]) / 2, right=True)
        return torch.sign(x) * levels[index]

    def initialize_from_tensor(self, x: Tensor) -> None:
        x = x.detach()
        dims = [d for d in range(x.dim()) if d != self.channel_axis] if self.channel_axis is not None else None
        amax = torch.clamp(x.abs().amax(dim=dims, keepdim=True) if dims else x.abs().max(), min=1e-12)
        best_scale, best_error = amax / self.max_magnitude, None
        for ratio in torch.linspace(0.5, 1.0, SEARCH_STEPS).tolist():
            scale = amax * ratio / self.max_magnitude
            error = (self._project(x, scale) * scale - x).pow(2)
            error = error.sum(dim=dims, keepdim=True) if dims else error.sum()
            if best_error is None:
                best_scale, best_error = scale, error
            else:
                better = error < best_error
                best_scale, best_error = torch.where(better, scale, best_scale), torch.minimum(error, best_error)
        self.set_params(best_scale, torch.zeros_like(best_scale))

    def fake_quant(self, x: Tensor) -> Tensor:
        scale = self.get_scale()
        target = self._project(x, scale) * scale
        return x + (target - x).detach()

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return self._project(x, self.get_scale())
