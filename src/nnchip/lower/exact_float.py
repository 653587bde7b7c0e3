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
When that fails, `requant_split` splits `M0 = Mh·2^s + Ml` so that every partial product stays below 2^53.
"""

from __future__ import annotations

import math

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
                     owned: bool = False) -> Tensor:
    """sat(floor(v·m + c), lo, hi) in float64, stored as `out_dtype`; v holds exact integers.

    `m` (float64, broadcast against v) and `c` are the exact constants M0·2^−n and zp + 1/2 of the module text.
    `owned`: v is a float64 temporary that may be overwritten.
    """
    t = v if owned and v.dtype == torch.float64 else v.to(torch.float64, copy=True)
    return floor_saturate_(t.mul_(m).add_(c), lo, hi, out_dtype)


def floor_saturate_(t: Tensor, lo: int, hi: int, out_dtype: torch.dtype) -> Tensor:
    """sat(floor(t), lo, hi) as `out_dtype`, overwriting the float tensor t.

    For lo >= 0, clamping to [lo, hi + 1/2] and converting (which truncates towards zero, i.e. floors non-negative
    values) saves the separate floor.
    """
    if lo >= 0 and not out_dtype.is_floating_point:
        return t.clamp_(lo, hi + 0.5).to(out_dtype)
    return t.floor_().clamp_(lo, hi).to(out_dtype)


def split_point(v_max: int, m0: np.ndarray, shift: np.ndarray) -> int | None:
    """s for `requant_split` so that every term is an integer (or one times 2^−s) below 2^53, or None.

    Per channel the split is at s_c = min(s, n_c − 1); it needs v_max·2^s_c <= 2^52, v_max·(M0_c >> s_c) < 2^52
    and n_c − s_c <= 52.
    """
    vb = bitlen(v_max)
    s = 52 - vb
    if s < 0:
        return None
    s_eff = np.minimum(s, shift.astype(np.int64) - 1)
    high_bits = np.array([bitlen(int(m) >> int(e)) for m, e in zip(m0.ravel(), s_eff.ravel(), strict=True)])
    if np.any(s_eff < 0) or np.any(vb + high_bits > 52) or np.any(shift - s_eff > 52):
        return None
    return s


def requant_split(v: Tensor, m0: np.ndarray, shift: np.ndarray, s: int, axis_shape: tuple[int, ...],
                  zero_point: int, lo: int, hi: int, out_dtype: torch.dtype) -> Tensor:
    """The HALF_UP requantization of exact integers v (float64) for any n >= 1, with M0 = Mh·2^s + Ml.

    floor((v·M0 + 2^(n−1)) / 2^n) = floor((v·Mh + floor(v·Ml / 2^s) + 2^(n−1−s)) / 2^(n−s)) for 1 <= s <= n−1
    (nested floors of power-of-two divisions); with `split_point`'s s every term is an integer below 2^53.
    `axis_shape` views the per-channel constants against v.
    """
    m0 = m0.astype(np.int64)
    shift = shift.astype(np.int64)
    s_eff = np.minimum(s, shift - 1)  # s <= n − 1 per channel (n >= 1; s = 0 when n = 1)
    high = m0 >> s_eff
    low = m0 - (high << s_eff)

    def const(values: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).reshape(axis_shape)

    q1 = torch.mul(v, const(np.ldexp(low.astype(np.float64), -s_eff))).floor_()
    q1.add_(const(np.ldexp(1.0, (shift - 1 - s_eff).astype(np.int64))))  # + 2^(n−1−s), an integer
    t = torch.addcmul(q1, v, const(high.astype(np.float64)))
    t.mul_(const(np.ldexp(1.0, -(shift - s_eff).astype(np.int64)))).floor_()
    return floor_saturate_(t.add_(zero_point), lo, hi, out_dtype)


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


def isqrt_rows(v: Tensor) -> Tensor:
    """Exact floor(sqrt(v)) of int64 values 0 <= v < 2^62: a float64 estimate corrected by integer comparisons."""
    s = torch.sqrt(v.to(torch.float64)).floor_().to(torch.int64)
    for _ in range(2):  # the estimate is off by at most one for v < 2^52, by a few units below 2^62
        s = torch.where(s * s > v, s - 1, s)
        s = torch.where((s + 1) * (s + 1) <= v, s + 1, s)
    return s


def float_exact_dtype(bound: int) -> torch.dtype | None:
    """float32 when every partial sum is below 2^24 in magnitude, float64 below 2^53, else None."""
    if bound < FLOAT32_EXACT:
        return torch.float32
    if bound < FLOAT64_EXACT:
        return torch.float64
    return None


def log2_ceil(value: int) -> int:
    return max(0, math.ceil(math.log2(value))) if value > 0 else 0
