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


def requant_in_float(v: Tensor, m: Tensor, c: float, saturation: Saturation, *, owned: bool = False) -> Tensor:
    """sat(floor(v·m + c), lo, hi) in float64, stored as the saturation's dtype; v holds exact integers.

    `m` (float64, broadcast against v) and `c` are the exact constants M0·2^−n and zp + 1/2 of the module text;
    the saturation's `shift` is added to c here (see `Saturation`). `owned`: v is a float64 temporary that may be
    overwritten.
    """
    t = v if owned and v.dtype == torch.float64 else v.to(torch.float64, copy=True)
    return saturation(t.mul_(m).add_(c + saturation.shift))


class Saturation:
    """y = sat(floor(t), lo, hi) as `out_dtype` for float64 t with |t| <= t_max, overwriting t, in few passes.

    Float-to-integer conversion truncates towards zero, which equals the floor for t >= 0 and, for negative t,
    gives a value that is still <= 0. So when the window starts at 0 or above, converting first and saturating
    after gives sat(floor(t)) — for a window [lo, hi] with lo < 0 after adding `shift` = −lo to t, which callers
    fold into their constant term (t + shift is the same requantization with zero point zp + shift). When every
    t + shift lies within int16 (`narrow`), the conversion goes to int16 and the clamp and the shift back run on
    int16 (a quarter of the float64 bytes; float-to-uint8 conversion is itself several times slower than
    float-to-int16 on CPU). Otherwise the floor and clamp run in float64.
    """

    def __init__(self, lo: int, hi: int, out_dtype: torch.dtype, t_max: float, *, may_shift: bool = True) -> None:
        self.lo, self.hi, self.out_dtype = lo, hi, out_dtype
        shift = max(-lo, 0) if may_shift else 0
        self.narrow = (out_dtype in (torch.uint8, torch.int8, torch.int16) and lo + shift >= 0
                       and t_max + shift + 1 < 2**15 and hi + shift < 2**15)
        self.shift = shift if self.narrow else 0

    def __call__(self, t: Tensor) -> Tensor:
        """t: float64 values already shifted by `self.shift`."""
        if self.narrow:
            y = t.to(torch.int16).clamp_(self.lo + self.shift, self.hi + self.shift)
            if self.shift:
                y.sub_(self.shift)
            return y if self.out_dtype == torch.int16 else y.to(self.out_dtype)
        if self.lo >= 0:
            return store(t.clamp_(self.lo, self.hi + 0.5), self.out_dtype)
        return store(t.floor_().clamp_(self.lo, self.hi), self.out_dtype)


def floor_saturate_(t: Tensor, lo: int, hi: int, out_dtype: torch.dtype, t_max: float = math.inf) -> Tensor:
    """sat(floor(t), lo, hi) as `out_dtype`, overwriting the float tensor t (|t| <= t_max); no shift folded in."""
    return Saturation(lo, hi, out_dtype, t_max, may_shift=False)(t)


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

    def __init__(self, low: Tensor, low_offset: Tensor, high: Tensor, constant: Tensor, scale: Tensor,
                 saturation: Saturation) -> None:
        self.low, self.low_offset, self.high, self.constant, self.scale = low, low_offset, high, constant, scale
        self.saturation = saturation

    @staticmethod
    def build(v_max: int, m0: np.ndarray, shift: np.ndarray, zero_point: int, lo: int, hi: int,
              offset: np.ndarray | None = None, out_dtype: torch.dtype = torch.int64) -> SplitRequant | None:
        m0 = np.asarray(m0, dtype=np.int64).ravel()
        shift = np.asarray(shift, dtype=np.int64).ravel()
        beta = np.zeros_like(m0) if offset is None else np.broadcast_to(np.asarray(offset, dtype=np.int64), m0.shape)
        s = 52 - bitlen(v_max)
        if s < 0 or np.any(shift < 1):
            return None
        s_eff = np.minimum(s, shift - 1)
        t_max = v_max * float(np.max(np.abs(np.ldexp(m0.astype(np.float64), -shift)))) + abs(zero_point) + 2
        for may_shift in (True, False):  # the saturation's shift enters the constant as a larger zero point
            saturation = Saturation(lo, hi, out_dtype, t_max, may_shift=may_shift)
            zp = zero_point + saturation.shift
            rows = []
            for m, n, split, b in zip(m0.tolist(), shift.tolist(), s_eff.tolist(), beta.tolist(), strict=True):
                high, k = m >> split, n - split
                low = m - (high << split)
                constant = (1 << (n - 1 - split)) + zp * (1 << k) + b * high
                if k > 52 or v_max * abs(high) + v_max + abs(constant) >= FLOAT64_EXACT:
                    break
                rows.append((math.ldexp(low, -split), math.ldexp(b * low, -split), float(high), float(constant),
                             math.ldexp(1.0, -k)))
            else:
                columns = [torch.tensor(column, dtype=torch.float64) for column in zip(*rows, strict=True)]
                return SplitRequant(*columns, saturation=saturation)
            if saturation.shift == 0:
                return None
        return None

    def columns(self) -> list[Tensor]:
        """(low, low_offset, high, constant, scale) per channel, float64."""
        return [self.low, self.low_offset, self.high, self.constant, self.scale]

    def shifted_window(self) -> tuple[int, int, int]:
        """(lo + shift, hi + shift, shift): the constants hold the saturation's shift (see `Saturation`)."""
        shift = self.saturation.shift
        return self.saturation.lo + shift, self.saturation.hi + shift, shift

    def __call__(self, v: Tensor, view: Callable[[Tensor], Tensor]) -> Tensor:
        """v: exact integers (float64, read only); `view` shapes a per-channel column against v.

        q = floor(v·Ml·2^−s + β·Ml·2^−s) + (D + β·Mh), t = (q + v·Mh)·2^−k: the multiply-adds are exact
        whether or not the CPU fuses them (every exact result is representable)."""
        q = torch.addcmul(view(self.low_offset), v, view(self.low)).floor_().add_(view(self.constant))
        return self.saturation(q.addcmul_(v, view(self.high)).mul_(view(self.scale)))


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
