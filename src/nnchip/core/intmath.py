"""Integer primitives of the nnchip integer contract (docs/integer-semantics.md §1, §5), on int64 tensors.

Every function takes and returns integer tensors (torch.int64) and uses only integer arithmetic, so the
same results hold in RTL. `>>` is an arithmetic shift (floor division by a power of two).
These are shared by the quantized model's deploy forward and by the interpreter; the export's numpy
reader re-implements them independently.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

from nnchip.core.errors import ConversionError


class Rounding(StrEnum):
    HALF_UP = "half_up"  # asr(v + 2^(n-1), n): ties towards +inf (canonical)
    HALF_AWAY = "half_away"  # sign(v) · asr(|v| + 2^(n-1), n)
    HALF_EVEN = "half_even"  # nearest, ties to even
    FLOOR = "floor"  # asr(v, n)


def asr(v: Tensor, n: Tensor | int) -> Tensor:
    """floor(v / 2^n) for n >= 0 (arithmetic right shift)."""
    return torch.bitwise_right_shift(v, n)


def round_shift(v: Tensor, n: Tensor | int, rounding: Rounding = Rounding.HALF_UP) -> Tensor:
    """v / 2^n rounded to an integer with the given rule; n >= 0 (n == 0 returns v unchanged).

    `n` may be a tensor broadcastable against `v` (per-channel shifts).
    """
    n_t = torch.as_tensor(n, dtype=torch.int64, device=v.device)
    # half = 2^(n-1) for n >= 1, 0 for n == 0 (so that n == 0 is the identity)
    half = torch.where(n_t > 0, torch.bitwise_left_shift(torch.ones_like(n_t), torch.clamp(n_t - 1, min=0)), 0)
    if rounding is Rounding.HALF_UP:
        return asr(v + half, n_t)
    if rounding is Rounding.FLOOR:
        return asr(v, n_t)
    if rounding is Rounding.HALF_AWAY:
        return torch.sign(v) * asr(torch.abs(v) + half, n_t)
    if rounding is Rounding.HALF_EVEN:
        floor = asr(v, n_t)
        remainder = v - torch.bitwise_left_shift(floor, n_t)
        up = (remainder > half) | ((remainder == half) & (half > 0) & (torch.remainder(floor, 2) == 1))
        return floor + up.to(v.dtype)
    raise ValueError(f"unknown rounding {rounding!r}")


def saturate(v: Tensor, lo: Tensor | int, hi: Tensor | int) -> Tensor:
    """min(max(v, lo), hi)."""
    lo_t = torch.as_tensor(lo, dtype=v.dtype, device=v.device)
    hi_t = torch.as_tensor(hi, dtype=v.dtype, device=v.device)
    return torch.minimum(torch.maximum(v, lo_t), hi_t)


def div_floor(a: Tensor, b: Tensor | int) -> Tensor:
    """floor(a / b) for b > 0 (not C's truncating division)."""
    return torch.div(a, b, rounding_mode="floor")


def isqrt(v: Tensor) -> Tensor:
    """Exact floor(sqrt(v)) for 0 <= v < 2^62, integer Newton iteration from an over-estimate."""
    if bool((v < 0).any()):
        raise ValueError("isqrt of a negative value")
    bitlen = torch.zeros_like(v)
    probe = v.clone()
    while bool((probe > 0).any()):
        bitlen = bitlen + (probe > 0).to(v.dtype)
        probe = probe >> 1
    x = torch.bitwise_left_shift(torch.ones_like(v), (bitlen + 1) // 2)  # 2^ceil(bitlen/2) >= sqrt(v)
    x = torch.where(v == 0, torch.ones_like(v), x)
    while True:
        nxt = torch.minimum(x, (x + div_floor(v, x)) >> 1)
        nxt = torch.where(v == 0, torch.ones_like(v), nxt)  # keep the divisor non-zero; fixed below
        if torch.equal(nxt, x):
            break
        x = nxt
    return torch.where(v == 0, torch.zeros_like(v), x)


def requantize(
    x: Tensor,
    multiplier: Tensor | int,
    shift: Tensor | int,
    *,
    in_zero_point: Tensor | int = 0,
    out_zero_point: Tensor | int = 0,
    lo: Tensor | int,
    hi: Tensor | int,
    rounding: Rounding = Rounding.HALF_UP,
) -> Tensor:
    """y = sat(round_shift((x − in_zp) · M0, n) + out_zp, lo, hi)   (integer-semantics §5.2)."""
    product = (x - in_zero_point) * torch.as_tensor(multiplier, dtype=torch.int64, device=x.device)
    return saturate(round_shift(product, shift, rounding) + out_zero_point, lo, hi)


def quantize_multiplier(real: float, mult_bits: int = 32) -> tuple[int, int]:
    """(M0, n) with M0 · 2^-n ≈ real, M0 < 2^(mult_bits-1), 1 <= n <= 62 (integer-semantics §5.3).

    Raises ConversionError when real >= 2^(mult_bits-2) (n would be < 1) or is not finite/positive.
    A multiplier too small for n <= 62 is reduced, possibly to M0 = 0 (constant output).
    """
    if not math.isfinite(real) or real < 0:
        raise ConversionError(f"requantization multiplier must be finite and >= 0, got {real!r}")
    if real == 0.0:
        return 0, 1
    mantissa, exponent = math.frexp(real)
    b = mult_bits - 1
    m0 = _round_half_even(mantissa * 2.0**b)
    if m0 == 2**b:
        m0 = 2 ** (b - 1)
        exponent += 1
    n = b - exponent
    if n > 62:
        m0 = _round_half_even(m0 / 2.0 ** (n - 62))
        n = 62
    if n < 1:
        raise ConversionError(
            f"requantization multiplier {real:.6g} is >= 2^{b - 1}: the output grid is far finer than the input"
        )
    return int(m0), int(n)


def quantize_multipliers(real: np.ndarray | Tensor, mult_bits: int = 32) -> tuple[Tensor, Tensor]:
    """Per-channel version of `quantize_multiplier`: int64 tensors (M0[c], n[c])."""
    values = np.asarray(real.detach().cpu() if isinstance(real, Tensor) else real, dtype=np.float64).ravel()
    pairs = [quantize_multiplier(float(r), mult_bits) for r in values]
    m0 = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
    n = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
    return m0, n


def _round_half_even(value: float) -> int:
    return int(round(value))  # Python's round is half-to-even
