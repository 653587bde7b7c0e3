"""Row-wise mixed schemes and precisions (RMSMP, Chang et al. ICCV 2021; ILMPQ arXiv 2111.00155; MSQ/SP2 arXiv
2012.04240): every output row of a weight gets one of three formats, at the same ratios in every layer, so one
accelerator configuration (DSP lanes for fixed point, LUT lanes for SP2) serves the whole model.

    format 0  fixed point at `high_bits` (option, default 8)      a fraction `high_ratio` of the rows
    format 1  fixed point at the spec's bits                       the rest
    format 2  SP2 (sum of two powers of two) at the spec's bits    a fraction `sp2_ratio` of the rows

Assignment, frozen afterwards (QAT keeps it, as RMSMP does): the rows whose low-bit fixed-point error
‖w_r − Q_fixed(w_r)‖² is largest take the high precision (our sensitivity proxy: the weight's own
quantization error, i.e. a Hessian taken as identity); of the others, the `sp2_ratio` share that gains most
from SP2 over fixed point (error difference) take SP2. ILMPQ is `sp2_ratio = 0`. Each row's scale is the
MSE-best α ∈ [0.5, 1]·max|w_r| for its format. Integers: fixed rows on their narrow symmetric grid, SP2 rows
on `sp2_magnitudes` (codes: sign | i1 | i2). Nearest level, ties to the larger magnitude; STE backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec, sp2_magnitudes
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer

SEARCH_STEPS = 26
HIGH, FIXED, SP2 = 0, 1, 2
SP2_MAX_BITS = 6  # 2^(2^m1 − 1) stays within 8 bits


@register_quantizer("row_mixed")
class RowMixedQuantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.role != "weight" or self.channel_axis is None:
            raise ConfigError("quantizer 'row_mixed' is for weights with granularity 'channel' (one format per row)")
        self.high_bits = int(self.spec.option("high_bits", 8))
        self.high_ratio = float(self.spec.option("high_ratio", 0.1))
        self.sp2_ratio = float(self.spec.option("sp2_ratio", 0.3))
        bits = self.spec.bits
        if not 2 <= bits <= SP2_MAX_BITS or not bits <= self.high_bits <= 16:
            raise ConfigError(f"quantizer 'row_mixed': bits must be in 2..{SP2_MAX_BITS} and high_bits in "
                              f"bits..16, got bits {bits}, high_bits {self.high_bits}")
        if not (0 <= self.high_ratio <= 1 and 0 <= self.sp2_ratio <= 1 and self.high_ratio + self.sp2_ratio <= 1):
            raise ConfigError(f"quantizer 'row_mixed': high_ratio {self.high_ratio} and sp2_ratio {self.sp2_ratio} "
                              "must be in [0, 1] with a sum of at most 1")
        channels = self.scale.shape[self.channel_axis]
        self.register_buffer("row_format", torch.full((channels,), FIXED, dtype=torch.int64))

    # ---- formats ----------------------------------------------------------------------------------
    def format_levels(self, row_format: int) -> list[int]:
        """Non-negative integer levels of one row format."""
        if row_format == SP2:
            return sorted(set(sp2_magnitudes(self.spec.bits)))
        bits = self.high_bits if row_format == HIGH else self.spec.bits
        return list(range(2 ** (bits - 1)))

    def format_descriptions(self) -> list[dict[str, object]]:
        bits = self.spec.bits
        return [{"scheme": "fixed", "bits": self.high_bits}, {"scheme": "fixed", "bits": bits},
                {"scheme": "sp2", "bits": bits}]

    @property
    def grid(self) -> IntGrid:
        magnitudes = sorted(set().union(*(self.format_levels(f) for f in (HIGH, FIXED, SP2))))
        values = tuple(sorted({s * v for v in magnitudes for s in (-1, 1)}))
        return IntGrid(IntSpec(max(magnitudes).bit_length() + 1, signed=True, narrow=True), Encoding.ROW_MIXED, values,
                       code_bits=self.high_bits)

    # ---- projection -------------------------------------------------------------------------------
    def _rows(self, x: Tensor) -> Tensor:
        return x.movedim(self.channel_axis, 0).reshape(x.shape[self.channel_axis], -1)  # (C, K)

    def _project_rows(self, rows: Tensor, scale: Tensor, formats: Tensor) -> Tensor:
        """Integer levels nearest to rows / scale, each row on its format's levels. rows (C, K), scale (C, 1)."""
        out = torch.zeros_like(rows)
        for row_format in (HIGH, FIXED, SP2):
            chosen = formats == row_format
            if bool(chosen.any()):
                levels = torch.tensor(self.format_levels(row_format), dtype=rows.dtype, device=rows.device)
                magnitude = rows[chosen].abs() / scale[chosen]
                index = torch.bucketize(magnitude, (levels[1:] + levels[:-1]) / 2, right=True)
                out[chosen] = torch.sign(rows[chosen]) * levels[index]
        return out

    def _best_scale(self, rows: Tensor, row_format: int) -> tuple[Tensor, Tensor]:
        """(scale (C, 1), squared error (C,)) of every row in one format, α searched in [0.5, 1]·max|w_r|."""
        amax = torch.clamp(rows.abs().amax(dim=1, keepdim=True), min=1e-12)
        top = max(self.format_levels(row_format))
        formats = torch.full((rows.shape[0],), row_format, dtype=torch.int64)
        best_scale, best_error = amax / top, torch.full((rows.shape[0],), float("inf"))
        for ratio in torch.linspace(0.5, 1.0, SEARCH_STEPS).tolist():
            scale = amax * ratio / top
            error = (self._project_rows(rows, scale, formats) * scale - rows).pow(2).sum(dim=1)
            better = error < best_error
            best_scale = torch.where(better[:, None], scale, best_scale)
            best_error = torch.minimum(error, best_error)
        return best_scale, best_error

    def initialize_from_tensor(self, x: Tensor) -> None:
        rows = self._rows(x.detach().float())
        channels = rows.shape[0]
        scales, errors = zip(*(self._best_scale(rows, f) for f in (HIGH, FIXED, SP2)), strict=True)
        formats = torch.full((channels,), FIXED, dtype=torch.int64)
        n_high = round(self.high_ratio * channels)
        n_sp2 = min(round(self.sp2_ratio * channels), channels - n_high)
        order = torch.argsort(errors[FIXED], descending=True, stable=True)
        formats[order[:n_high]] = HIGH
        rest = order[n_high:]
        gain = (errors[FIXED] - errors[SP2])[rest]
        formats[rest[torch.argsort(gain, descending=True, stable=True)[:n_sp2]]] = SP2
        scale = torch.stack(scales)[formats, torch.arange(channels)]  # (C, 1)
        self.row_format.copy_(formats)
        self.set_params(scale, torch.zeros_like(scale))

    def _apply(self, x: Tensor, fake: bool) -> Tensor:
        rows = self._rows(x)
        scale = self.get_scale().reshape(-1, 1)
        levels = self._project_rows(rows, scale, self.row_format)
        result = levels * scale if fake else levels
        moved_shape = x.movedim(self.channel_axis, 0).shape
        return result.reshape(moved_shape).movedim(0, self.channel_axis)

    def fake_quant(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            target = self._apply(x.detach(), fake=True)
        return x + (target - x).detach()

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return self._apply(x, fake=False)
