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
    """Normalise each row (last axis, length C) of integers: z = asr((x − μ)·⌊(2^31−1)/std⌋, 1).

    μ = ⌊(2·Σx + C) / (2C)⌋ (half-up mean), var = Σ(x − μ)², std = max(isqrt(var), 1) — or I-ViT's fixed
    10-step Newton from 2^16 when sqrt_mode == "ivit". z has scale sqrt(C)/2^30 in units of the row's std.
    """
    c = x.shape[-1]
    total = x.sum(dim=-1, keepdim=True)
    mean = div_floor(2 * total + c, 2 * c)
    y = x - mean
    var = (y * y).sum(dim=-1, keepdim=True)
    if sqrt_mode == "ivit":
        std = torch.full_like(var, 2**16)
        for _ in range(10):
            std = asr(std + div_floor(var, torch.clamp(std, min=1)), 1)
    elif sqrt_mode == "exact":
        std = isqrt(var)
    else:
        raise ValueError(f"sqrt_mode must be 'exact' or 'ivit', got {sqrt_mode!r}")
    std = torch.clamp(std, min=1)
    factor = div_floor(torch.full_like(std, INT31_MAX), std)
    return asr(y * factor, 1)


def layernorm_output_scale(channels: int) -> float:
    """Real value of one unit of `int_layernorm_core`'s output, in units of the row's standard deviation."""
    return math.sqrt(channels) / 2**30
