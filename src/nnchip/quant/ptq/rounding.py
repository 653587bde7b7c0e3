"""AdaRound's learned rounding (Nagel et al., ICML 2020, arXiv 2004.10568), shared by adaround/brecq/qdrop.

    W̃ = s · (clip(floor(W/s) + h(V) + z, qmin, qmax) − z)
    h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)          rectified sigmoid, ζ = 1.1, γ = −0.1
    f_reg(V) = Σ 1 − |2·h(V) − 1|^β              β annealed 20 → 2 after a warm-up without regulariser
    init V so that h(V) = frac(W/s); deploy: h = 1{V ≥ 0}

Freezing: the layer's float weight is replaced by s·(q − z) with the learned integers q, and its
original quantizer is put back. Rounding s·(q − z)/s + z is exact in float, so the unchanged quantizer's
`int_values(weight)` returns exactly q and nothing downstream needs to know AdaRound ran.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from nnchip.core.intspec import Encoding
from nnchip.quant.base import Quantizer
from nnchip.quant.modules import QConv2d, QLinear

ZETA, GAMMA = 1.1, -0.1


def supports_adaround(layer: QConv2d | QLinear) -> bool:
    """Uniform two's-complement weight grids of at least 2 bits (binary/ternary/PoT keep their own rule)."""
    q = layer.weight_quantizer
    grid = q.grid
    return isinstance(q, Quantizer) and grid.values is None and grid.encoding == Encoding.TWOS_COMPLEMENT \
        and grid.spec.bits >= 2


class AdaRoundWeight(nn.Module):
    """Stands in for a layer's weight quantizer while its rounding is learned."""

    def __init__(self, quantizer: Quantizer, weight: Tensor) -> None:
        super().__init__()
        grid = quantizer.grid
        self.qmin, self.qmax = grid.qmin, grid.qmax
        scale = quantizer.get_scale().detach().clone()
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", quantizer.get_zero_point().detach().clone())
        scaled = weight.detach() / scale
        self.register_buffer("w_floor", torch.floor(scaled))
        rest = (scaled - self.w_floor).clamp(1e-4, 1 - 1e-4)
        self.V = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.soft = True

    def h(self) -> Tensor:
        return torch.clamp(torch.sigmoid(self.V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def integers(self) -> Tensor:
        """The hard-rounded integers q (float tensor of integer values)."""
        up = (self.V.detach() >= 0).to(self.w_floor.dtype)
        return torch.clamp(self.w_floor + up + self.zero_point, self.qmin, self.qmax)

    def regularizer(self, beta: float) -> Tensor:
        return (1.0 - (2.0 * self.h() - 1.0).abs().pow(beta)).sum()

    def forward(self, _weight: Tensor) -> Tensor:
        if not self.soft:
            return self.scale * (self.integers() - self.zero_point)
        q = torch.clamp(self.w_floor + self.h() + self.zero_point, self.qmin, self.qmax)
        return self.scale * (q - self.zero_point)


def beta_at(step: int, total: int, warmup: float, start: float, end: float) -> float | None:
    """β of the regulariser at `step` (None during the warm-up: regulariser off)."""
    begin = warmup * total
    if step < begin:
        return None
    rel = (step - begin) / max(1.0, total - begin)
    return end + (start - end) * max(0.0, 1.0 - rel)


@contextmanager
def learned_rounding(layers: list[QConv2d | QLinear]) -> Iterator[list[AdaRoundWeight]]:
    """Install AdaRoundWeight on each layer; on exit freeze the hard rounding into the weight."""
    originals = [layer.weight_quantizer for layer in layers]
    roundings = [AdaRoundWeight(q, layer.weight) for q, layer in zip(originals, layers, strict=True)]
    for layer, rounding in zip(layers, roundings, strict=True):
        layer.weight_quantizer = rounding  # type: ignore[assignment]
    try:
        yield roundings
    finally:
        for layer, rounding, quantizer in zip(layers, roundings, originals, strict=True):
            layer.weight_quantizer = quantizer
            freeze(layer, rounding)


@torch.no_grad()
def freeze(layer: QConv2d | QLinear, rounding: AdaRoundWeight) -> Tensor:
    """weight ← s·(q − z) so that the layer's own quantizer reproduces the learned integers q."""
    q = rounding.integers()
    layer.weight.data = (rounding.scale * (q - rounding.zero_point)).to(layer.weight.dtype)
    return q


@torch.no_grad()
def search_weight_scale(quantizer: Quantizer, weight: Tensor, *, p: float = 2.4, steps: int = 40) -> None:
    """Per scale entry (channel or tensor), the clip ratio r ∈ [0.3, 1] minimising Σ|W − Q_r(W)|^p."""
    grid = quantizer.grid
    if quantizer.get_zero_point().abs().max() > 0 or grid.qmax <= 0:
        return
    shape = quantizer.scale.shape
    reduce_dims = tuple(range(1, weight.dim())) if len(shape) > 0 else tuple(range(weight.dim()))
    amax = weight.abs().amax(dim=reduce_dims, keepdim=len(shape) > 0).reshape(shape).clamp(min=1e-8)
    best_err = torch.full(shape, math.inf)
    best_scale = amax / grid.qmax
    for ratio in torch.linspace(1.0, 0.3, steps).tolist():
        scale = amax * ratio / grid.qmax
        q = torch.clamp(torch.round(weight / scale), grid.qmin, grid.qmax)
        err = (weight - q * scale).abs().pow(p).sum(dim=reduce_dims, keepdim=len(shape) > 0).reshape(shape)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    quantizer.set_params(best_scale, torch.zeros_like(best_scale))


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over channels (dim 1 of conv maps, last dim of token tensors), averaged elsewhere."""
    channel_dim = 1 if pred.dim() == 4 else -1
    return (pred - target).pow(2).sum(dim=channel_dim).mean()
