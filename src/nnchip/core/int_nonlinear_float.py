"""The contract's table softmax and exactly centred LayerNorm evaluated on integer-valued float tensors.

Same integers as `nnchip.core.int_nonlinear` (a test compares them element by element), computed in float64
where every intermediate is an integer, or an integer times a power of two, below 2^53 — so no rounding happens —
instead of int64 tensors, which CPU kernels handle several times slower. The fake-quant training forward
(QuantConfig.nonlinear = "integer") uses them: its inputs are already real tensors on the integer grid, and
a QAT step runs the softmax and LayerNorm of every block. The deploy forward and the interpreter keep their own
implementations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.int_nonlinear import INT31_MAX, SOFTMAX_RECIPROCAL_BITS

FLOAT64_EXACT_BITS = 52


def table_softmax_float(x: Tensor, table: Tensor, *, out_bits: int = 8, dim: int = -1) -> Tensor:
    """`table_softmax` of integer-valued x (any float dtype): y = round_half_up(e·f / 2^s), as float64.

    d = max x − x (exact: |x| < 2^24 for float32), e = T[min(d, len(T) − 1)] < 2^21, Σe < 2^37 (at most 2^16
    entries per row), f = ⌊2^52 / Σe⌋ by floor_divide (exact: fmod is exact and the quotient of the multiple is
    an integer), e·f <= 2^52, and e·(f·2^−s) + 1/2 is a multiple of 2^−s below 2^(52−s) + 1: all exact in float64.
    Every pass runs in one dtype (CPU kernels that mix float32 and float64 operands are several times slower).
    """
    if x.shape[dim] > 1 << 16:
        raise ValueError(f"table softmax rows hold at most 2^16 entries, got {x.shape[dim]}")
    distance = (x.amax(dim=dim, keepdim=True) - x).clamp_(max=table.numel() - 1)
    index = distance.to(torch.int32)
    e = table.to(torch.float64).index_select(0, index.reshape(-1)).view(index.shape)
    total = e.sum(dim=dim, keepdim=True).clamp_(min=1.0)
    factor = torch.floor_divide(torch.full_like(total, 2.0**SOFTMAX_RECIPROCAL_BITS), total)
    shift = SOFTMAX_RECIPROCAL_BITS - (out_bits - 1)
    return e.mul_(factor.mul_(2.0**-shift)).add_(0.5).floor_()


def layernorm_float_is_exact(channels: int, width: int) -> bool:
    """True when `int_layernorm_core_float` is exact for rows of `channels` integers spanning at most `width`:
    Σy² <= C³·W² must stay below 2^52, where the correctly rounded square root floors to isqrt exactly."""
    return channels**3 * max(width, 1) ** 2 < 2**FLOAT64_EXACT_BITS


def int_layernorm_core_float(x: Tensor) -> Tensor:
    """`int_layernorm_core(x, sqrt_mode="exact")` of integer-valued x, as float64 (see layernorm_float_is_exact).

    y = C·x − Σx, var = Σy² (exact below 2^52), std = max(⌊√var⌋, 1) (a correctly rounded square root of an
    integer below 2^52 floors to isqrt), f = ⌊(2^31 − 1)/std⌋ by floor_divide, z = ⌊y·(f/2)⌋ with
    |y| <= isqrt(var) = std (an integer whose square is at most var), so |y·f| < 2^31: every step an exact
    float64 integer. The interpreter's fast LayerNorm runs this function too.
    """
    x64 = x.to(torch.float64)
    y = torch.add(x64.sum(dim=-1, keepdim=True).neg_(), x64, alpha=x.shape[-1])  # one pass: −Σx + C·x
    std = torch.linalg.vecdot(y, y, dim=-1).unsqueeze_(-1).sqrt_().floor_().clamp_(min=1.0)
    half_factor = torch.floor_divide(torch.full_like(std, float(INT31_MAX)), std).mul_(0.5)  # f/2, exact
    return y.mul_(half_factor).floor_()  # y·(f/2) = y·f/2 exactly
