"""Exact integer arithmetic carried out in float32/float64 (used by the interpreter's fast paths).

A float holds every integer of magnitude up to 2^24 (float32) or 2^53 (float64) exactly, and a sum, product or
power-of-two scaling whose exact result is such an integer (or an integer times a power of two with few enough
significant bits) is computed without rounding. Each function here states the bound under which it is exact;
the interpreter proves the bound from the value ranges before it takes the path.

Requantization `y = sat(floor((v·M0 + 2^(n−1)) / 2^n) + zp, lo, hi)` (integer-semantics §1, HALF_UP) is done as
`y = sat(floor(v·m + c), lo, hi)` with `m = M0·2^−n` and `c = zp + 1/2`, both exact float64 constants
(`requant_in_float`). It is exact when `n + bitlen(K + |zp| + 2) + 1 <= 53` with `K = max(|lo|, |hi| + 1)`
(`window_exact`): where `|v·M0| < 2^53` the product is exact and `v·m + c`, a multiple of 2^−n below 2^53·2^−n in
the window that decides the result, is exact too; elsewhere `|v·m| >= 2^(53−n) > K + |c| + 1`, and rounding,
which is monotone, keeps the value on the same side of the clamp window, so saturation gives the same result.
When that fails, `SplitRequant` splits `M0 = Mh·2^s + Ml` so that every partial product stays below 2^53.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

FLOAT32_EXACT = 2**24  # every integer of magnitude <= 2^24 is a float32
FLOAT64_EXACT = 2**53


def bitlen(value: int) -> int:
    return int(abs(int(value))).bit_length()


def window_exact(shift: np.ndarray, zero_point: int, lo: int, hi: int) -> bool:
    """True when `requant_in_float` reproduces the HALF_UP requantization exactly for every input (see module)."""
    k = max(abs(lo), abs(hi) + 1)
    return int(np.max(shift)) + bitlen(k + abs(zero_point) + 2) + 1 <= 53 and int(np.min(shift)) >= 0


def requant_in_float(v: Tensor, m: Tensor, c: float, lo: int, hi: int, out_dtype: torch.dtype, *,
                     owned: bool = False, t_max: float = math.inf) -> Tensor:
    """sat(floor(v·m + c), lo, hi) in float64, stored as `out_dtype`; v holds exact integers.

    `m` (float64, broadcast against v) and `c` are the exact constants M0·2^−n and zp + 1/2 of the module text.
    `owned`: v is a float64 temporary that may be overwritten; `t_max` bounds |v·m + c| (see `floor_saturate_`).
    """
    t = v if owned and v.dtype == torch.float64 else v.to(torch.float64, copy=True)
    return floor_saturate_(t.mul_(m).add_(c), lo, hi, out_dtype, t_max)


def floor_saturate_(t: Tensor, lo: int, hi: int, out_dtype: torch.dtype, t_max: float = math.inf) -> Tensor:
    """sat(floor(t), lo, hi) as `out_dtype`, overwriting the float tensor t; `t_max` bounds |t|.

    For lo >= 0 truncation towards zero, which the float-to-integer conversion does, gives the same saturated
    result as the floor (values below lo saturate either way), so no floor pass is needed: when |t| < 2^15 the
    value converts to int16 first and saturates there (cheaper than in float64), otherwise it clamps to
    [lo, hi + 1/2] in float64 before converting.
    """
    if lo >= 0:
        if out_dtype == torch.uint8 and t_max < 2**15:
            return t.to(torch.int16).clamp_(lo, hi).to(torch.uint8)
        return store(t.clamp_(lo, hi + 0.5), out_dtype)
    return store(t.floor_().clamp_(lo, hi), out_dtype)


def store(t: Tensor, out_dtype: torch.dtype) -> Tensor:
    """Float tensor of in-range values as an integer dtype, truncated towards zero (a floor for integral or
    non-negative values).

    Float to uint8 conversion is several times slower than float to int16 on CPU, so it goes through int16.
    """
    if out_dtype == torch.uint8:
        return t.to(torch.int16).to(torch.uint8)
    return t.to(out_dtype)


class SplitRequant:
    """sat(floor(((v + β)·M0 + 2^(n−1)) / 2^n) + zp, lo, hi) of exact integers v (|v|, |v + β| <= v_max) in float64,
    for any n >= 1 and any integer M0 (also negative), with M0 = Mh·2^s + Ml, 0 <= Ml < 2^s, per channel.

    With k = n − s: floor(((v+β)·M0 + 2^(n−1)) / 2^n) + zp = floor(((v+β)·Mh + floor((v+β)·Ml / 2^s) + D) / 2^k),
    D = 2^(n−1−s) + zp·2^k (nested floors of power-of-two divisions; s <= n − 1). Computed as
    q = floor(v·Ml·2^−s + β·Ml·2^−s) + (D + β·Mh),  y = floor((v·Mh + q)·2^−k): `build` picks the largest
    s with v_max·2^s <= 2^52 so that every product and sum is an integer (or one times 2^−s) below 2^53, and
    returns None when no s does.
    """

    def __init__(self, low: Tensor, low_offset: Tensor, high: Tensor, constant: Tensor, scale: Tensor, lo: int,
                 hi: int, t_max: float) -> None:
        self.low, self.low_offset, self.high, self.constant, self.scale = low, low_offset, high, constant, scale
        self.lo, self.hi, self.t_max = lo, hi, t_max

    @staticmethod
    def build(v_max: int, m0: np.ndarray, shift: np.ndarray, zero_point: int, lo: int, hi: int,
              offset: np.ndarray | None = None) -> SplitRequant | None:
        m0 = np.asarray(m0, dtype=np.int64).ravel()
        shift = np.asarray(shift, dtype=np.int64).ravel()
        beta = np.zeros_like(m0) if offset is None else np.broadcast_to(np.asarray(offset, dtype=np.int64), m0.shape)
        s = 52 - bitlen(v_max)
        if s < 0 or np.any(shift < 1):
            return None
        s_eff = np.minimum(s, shift - 1)
        rows = []
        for m, n, split, b in zip(m0.tolist(), shift.tolist(), s_eff.tolist(), beta.tolist(), strict=True):
            high, k = m >> split, n - split
            low = m - (high << split)
            constant = (1 << (n - 1 - split)) + zero_point * (1 << k) + b * high
            if k > 52 or v_max * abs(high) + v_max + abs(constant) >= FLOAT64_EXACT:
                return None
            rows.append((math.ldexp(low, -split), math.ldexp(b * low, -split), float(high), float(constant),
                         math.ldexp(1.0, -k)))
        columns = [torch.tensor(column, dtype=torch.float64) for column in zip(*rows, strict=True)]
        t_max = v_max * float(np.max(np.abs(np.ldexp(m0.astype(np.float64), -shift)))) + abs(zero_point) + 2
        return SplitRequant(*columns, lo=lo, hi=hi, t_max=t_max)

    def __call__(self, v: Tensor, view: Callable[[Tensor], Tensor], out_dtype: torch.dtype) -> Tensor:
        """v: exact integers (float64, overwritten); `view` shapes a per-channel column against v."""
        q = torch.mul(v, view(self.low)).add_(view(self.low_offset)).floor_().add_(view(self.constant))
        t = v.mul_(view(self.high)).add_(q).mul_(view(self.scale))
        return floor_saturate_(t, self.lo, self.hi, out_dtype, self.t_max)


def chunks_below(contributions: np.ndarray, limit: int) -> list[tuple[int, int]] | None:
    """Split the reduction axis into consecutive [start, stop) chunks whose summed contribution stays < limit.

    `contributions` (C, K): the largest magnitude each reduction index k adds to output channel c. None when a
    single index already reaches the limit.
    """
    if contributions.size == 0:
        return [(0, contributions.shape[-1])]
    if int(contributions.max()) >= limit:
        return None
    chunks = []
    start = 0
    running = np.zeros(contributions.shape[0], dtype=np.float64)
    for k in range(contributions.shape[1]):
        column = contributions[:, k].astype(np.float64)
        if float((running + column).max()) >= limit:
            chunks.append((start, k))
            start, running = k, np.zeros_like(running)
        running += column
    chunks.append((start, contributions.shape[1]))
    return chunks
