"""Integer-only non-linear operators of the contract (docs/integer-semantics.md §10; I-ViT, arXiv 2207.01405).

All inputs and outputs are int64 tensors; constants derived from real scales (x0, tables) are computed once
by the caller at conversion time and passed in as Python integers. Shared by the fake-quant forward
(QuantConfig.nonlinear = "integer"), the deploy forward and the interpreter.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nnchip.core.intmath import asr, div_floor, isqrt

INT31_MAX = 2**31 - 1


def exp_shift_x0(scale: float) -> int:
    """x0 = floor(−1 / S): the (negative) integer that represents −1.0 on the input grid."""
    return math.floor(-1.0 / scale)


def int_exp_shift(x: Tensor, x0: int, n: int) -> Tensor:
    """e ≈ 2^n · exp(S·x) for x <= 0 with shifts and adds only (I-ViT's IntExpShift); scale of e: S/2^n·…

    t = x + ⌊x/2⌋ − ⌊x/16⌋  (≈ x·log2 e),  t = max(t, n·x0),  q = ⌊t/x0⌋,  r = t − x0·q,
    e = ⌊(r/2 − x0)·2^(n−q)⌋ = asr((r − 2·x0) << (n − q), 1), clamped at 0.
    """
    t = x + asr(x, 1) - asr(x, 4)
    t = torch.maximum(t, torch.full_like(t, n * x0))
    q = div_floor(t, x0)  # 0 <= q <= n
    r = t - x0 * q
    e = asr(torch.bitwise_left_shift(r - 2 * x0, n - q), 1)
    return torch.clamp(e, min=0)


def shiftmax(x: Tensor, x0: int, *, out_bits: int = 8, n: int = 15, dim: int = -1) -> Tensor:
    """Integer softmax along `dim` (zero point 0 input); output unsigned at scale 2^−(out_bits−1).

    e_j = IntExpShift(x_j − max x), sum = min(Σ e, 2^31 − 1), f = ⌊(2^31 − 1)/sum⌋,
    y_j = ⌊e_j·f / 2^(32 − out_bits)⌋.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = int_exp_shift(shifted, x0, n)
    total = torch.clamp(e.sum(dim=dim, keepdim=True), max=INT31_MAX, min=1)
    factor = div_floor(torch.full_like(total, INT31_MAX), total)
    return asr(e * factor, 32 - out_bits)


SOFTMAX_TABLE_BITS = 20  # entries of the exp table: round(2^20·exp(−S·d))
SOFTMAX_RECIPROCAL_BITS = 52  # the row's reciprocal ⌊2^52 / Σe⌋


def softmax_exp_table(scale: float, span: int) -> Tensor:
    """T[d] = round(2^20·exp(−S·d)) for d = 0, 1, …, up to `span` (the input's code range) or the first zero
    entry, whichever comes first; the table's last entry stands for every larger distance."""
    length = span + 1
    cutoff = math.ceil((SOFTMAX_TABLE_BITS + 1) * math.log(2) / scale) + 1  # beyond it entries round to 0
    d = torch.arange(min(length, cutoff), dtype=torch.float64)
    return torch.round(torch.exp(-scale * d) * 2**SOFTMAX_TABLE_BITS).to(torch.int64)


def table_softmax(x: Tensor, table: Tensor, *, out_bits: int = 8, dim: int = -1) -> Tensor:
    """Integer softmax along `dim` with an exp table (zero point 0 input, at most 2^16 entries per row).

    d = max x − x, e = T[min(d, len(T) − 1)], f = ⌊2^52 / Σe⌋, y = round_half_up(e·f / 2^(52 − (out_bits−1))).
    Output unsigned at scale 2^−(out_bits−1). Σe ≤ 2^16·2^20 keeps f ≥ 2^16, and e·f ≤ 2^52.
    """
    distance = (x.amax(dim=dim, keepdim=True) - x).clamp_(max=table.numel() - 1)
    e = torch.take(table, distance)  # a fresh buffer: the rest runs in place
    total = torch.clamp(e.sum(dim=dim, keepdim=True), min=1)
    factor = div_floor(torch.full_like(total, 2**SOFTMAX_RECIPROCAL_BITS), total)
    shift = SOFTMAX_RECIPROCAL_BITS - (out_bits - 1)
    return e.mul_(factor).add_(1 << (shift - 1)).bitwise_right_shift_(shift)


SHIFT_GELU_SIGMA_BITS = 16  # σ on a 2^-15 grid inside the integer GELU


def shift_gelu_x0(scale: float) -> int:
    """x0 of ShiftGELU's exponential: floor(−1 / (1.702·S))."""
    return exp_shift_x0(1.702 * scale)


def shift_gelu(x: Tensor, x0: int, *, out_bits: int = 8, n: int = 23, dim: int = -1) -> Tensor:
    """ShiftGELU: x·σ(1.702·x) with σ as a two-term Shiftmax; x0 = floor(−1/(1.702·S)).

    Output integer y = x·σ_q at scale S·2^−(out_bits−1) (a Requant follows in the graph).
    """
    x_max = torch.clamp(x.amax(dim=dim, keepdim=True), min=0)
    e1 = int_exp_shift(x - x_max, x0, n)
    e2 = int_exp_shift(-x_max.expand_as(x), x0, n)
    total = torch.clamp(e1 + e2, min=1, max=INT31_MAX)
    sigma = asr(e1 * div_floor(torch.full_like(total, INT31_MAX), total), 32 - out_bits)
    return x * sigma


def int_layernorm_core(x: Tensor, *, sqrt_mode: str = "exact") -> Tensor:
    """Normalise each row (last axis, length C) of integers; z has scale sqrt(C)/2^30 in units of the row's std.

    "exact" (default): exact centring without a rounded mean, y = C·x − Σx (= C·(x − μ)), var = Σy²,
        std = max(isqrt(var), 1) (= C·sqrt(Σ(x − μ)²) rounded down), z = asr(y·⌊(2^31−1)/std⌋, 1).
    "ivit": I-ViT's LayerNorm for compatibility: μ = ⌊(2·Σx + C) / (2C)⌋ (half-up mean), y = x − μ,
        var = Σy², std = 10 Newton steps from 2^16, z = asr(y·⌊(2^31−1)/std⌋, 1).
    Both give y/std ≈ (x − μ)/sqrt(Σ(x − μ)²); exact centring removes the half-LSB mean error that rows with a
    small spread turn into several output LSBs.
    """
    c = x.shape[-1]
    total = x.sum(dim=-1, keepdim=True)
    if sqrt_mode == "exact":
        y = c * x - total
        std = isqrt((y * y).sum(dim=-1, keepdim=True))
    elif sqrt_mode == "ivit":
        y = x - div_floor(2 * total + c, 2 * c)
        var = (y * y).sum(dim=-1, keepdim=True)
        std = torch.full_like(var, 2**16)
        for _ in range(10):
            std = asr(std + div_floor(var, torch.clamp(std, min=1)), 1)
    else:
        raise ValueError(f"sqrt_mode must be 'exact' or 'ivit', got {sqrt_mode!r}")
    std = torch.clamp(std, min=1)
    factor = div_floor(torch.full_like(std, INT31_MAX), std)
    return asr(y * factor, 1)


def layernorm_output_scale(channels: int) -> float:
    """Real value of one unit of `int_layernorm_core`'s output, in units of the row's standard deviation."""
    return math.sqrt(channels) / 2**30
