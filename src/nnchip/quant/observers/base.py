"""Observer base: collects range statistics of a tensor, per tensor or along one channel axis."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.core.errors import DataError


class Observer(nn.Module):
    """Accumulates statistics with `update(x)`; `range()` returns (lo, hi) shaped like the scale.

    channel_axis None: per-tensor (scalar lo/hi). Otherwise one (lo, hi) per index of that axis,
    shaped (C, 1, ...) to broadcast against the observed tensor. Subclasses may also implement
    `choose_range(quantize)` to search a clip that minimises quantization error.
    """

    def __init__(self, channel_axis: int | None = None, **options: float) -> None:
        super().__init__()
        self.channel_axis = channel_axis
        self.options = options
        self.register_buffer("lo", torch.tensor([]), persistent=False)
        self.register_buffer("hi", torch.tensor([]), persistent=False)
        self.register_buffer("count", torch.tensor(0, dtype=torch.int64), persistent=False)

    def reduce_min_max(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-tensor or per-channel (min, max) of x, shaped for broadcasting."""
        if not torch.isfinite(x).all():
            raise DataError("calibration data contains NaN or infinite values")
        if x.numel() == 0:
            raise DataError("calibration data is empty")
        if self.channel_axis is None:
            return x.min(), x.max()
        axis = self.channel_axis % x.dim()
        flat = x.transpose(0, axis).reshape(x.shape[axis], -1)
        shape = [1] * x.dim()
        shape[axis] = x.shape[axis]
        return flat.min(dim=1).values.reshape(shape), flat.max(dim=1).values.reshape(shape)

    def update(self, x: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def range(self) -> tuple[Tensor, Tensor]:
        if int(self.count) == 0:
            raise DataError("observer saw no data: run calibration batches before finishing calibration")
        return self.lo, self.hi

    def range_for(self, grid: object, symmetric: bool) -> tuple[Tensor, Tensor]:
        """The range to quantize with on `grid` (an IntGrid); error-searching observers override this."""
        return self.range()

    def forward(self, x: Tensor) -> Tensor:
        self.update(x.detach())
        self.count += 1
        return x
