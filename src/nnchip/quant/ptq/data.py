"""Calibration data for PTQ (validated once) and switches that turn a QModel's quantizers off and on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from nnchip.core.errors import DataError
from nnchip.quant.base import Quantizer
from nnchip.quant.quantize import QModel, calibrate


@dataclass
class CalibrationData:
    """The calibration inputs as one tensor (N, ...) plus the chunk size used for forward passes."""

    inputs: Tensor
    eval_batch_size: int = 128

    @classmethod
    def from_batches(cls, batches: Iterable[object], *, eval_batch_size: int = 128) -> CalibrationData:
        """Accepts a tensor, or an iterable of tensors or (input, target) pairs; rejects empty/NaN data."""
        if isinstance(batches, CalibrationData):
            return batches
        if isinstance(batches, Tensor):
            batches = [batches]
        tensors: list[Tensor] = []
        try:
            iterator = iter(batches)
        except TypeError:
            raise DataError(f"calibration data must be an iterable of tensors, got {type(batches).__name__}") from None
        for index, batch in enumerate(iterator):
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(inputs, Tensor):
                raise DataError(f"calibration batch {index} is a {type(inputs).__name__}, not a tensor")
            if inputs.numel() == 0:
                raise DataError(f"calibration batch {index} is empty")
            if not torch.isfinite(inputs).all():
                raise DataError(f"calibration batch {index} contains NaN or infinite values")
            tensors.append(inputs.detach().float())
        if not tensors:
            raise DataError("calibration data is empty: no batch was provided")
        try:
            stacked = torch.cat(tensors)
        except RuntimeError:
            raise DataError("calibration batches have different sample shapes") from None
        return cls(stacked, eval_batch_size)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def chunks(self) -> Iterator[Tensor]:
        yield from self.inputs.split(self.eval_batch_size)


def weight_quantizers(qmodel: QModel) -> list[Quantizer]:
    return [layer.weight_quantizer for _, layer in qmodel.layers()]


@contextmanager
def quantization_disabled(qmodel: QModel) -> Iterator[None]:
    """Every quantizer (weights and activations) becomes the identity: the (BN-folded) float model."""
    quantizers = [q for _, q in qmodel.quantizers()]
    before = [q.enabled for q in quantizers]
    for q in quantizers:
        q.enabled = False
    try:
        yield
    finally:
        for q, state in zip(quantizers, before, strict=True):
            q.enabled = state


def is_calibrated(qmodel: QModel) -> bool:
    return all(bool(q.initialized) for _, q in qmodel.activation_quantizers())


def ensure_calibrated(qmodel: QModel, data: CalibrationData) -> None:
    """Calibrate the activation quantizers once, unless that already happened."""
    if not is_calibrated(qmodel):
        calibrate(qmodel, data.chunks())


@torch.no_grad()
def run_in_chunks(fn: object, inputs: Tensor, chunk: int) -> Tensor:
    """fn applied to `inputs` chunk by chunk (no grad), concatenated along dim 0."""
    return torch.cat([fn(x) for x in inputs.split(chunk)])  # type: ignore[operator]
