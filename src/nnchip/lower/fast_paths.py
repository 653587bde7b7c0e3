"""The interpreter's fast, exact kernels: conv/linear/matmul reductions in float with a proven bound, and the
requantization of docs/integer-semantics.md §5.2 done in place.

Exactness: a float32 (float64) sum of integer products is exact while every partial sum stays below 2^24
(2^53); the lowering's weight-aware bound `acc_bits` (|acc| < 2^(acc_bits − 1), bias included) proves it, so
the float result converts to int64 without rounding. Where the bound exceeds 2^53 the reduction is split
over input channels into chunks whose own bound fits, and the chunks are added in int64. Requantization runs
on the accumulator's own int64 buffer (multiply, add 2^(n−1), arithmetic shift, add zero point, clamp — the
same operations as `nnchip.core.intmath.requantize` with HALF_UP rounding), which saves the allocations that
dominated the time; `tests/lower/test_fast_paths.py` checks both against the core primitives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nnchip.core.errors import ConversionError

FLOAT32_EXACT_BITS = 25  # signed bound: |partial sums| < 2^24
FLOAT64_EXACT_BITS = 54  # |partial sums| < 2^53


def float_dtype(acc_bits: int) -> torch.dtype | None:
    """The float type whose sums are exact for a signed accumulator of `acc_bits`, or None (neither is)."""
    if acc_bits <= FLOAT32_EXACT_BITS:
        return torch.float32
    if acc_bits <= FLOAT64_EXACT_BITS:
        return torch.float64
    return None


def exact_gemm(fn: Callable[..., Tensor], x: Tensor, weight: Tensor, bias: Tensor | None, acc_bits: int,
               split_axis: int, zero_point: int = 0) -> Tensor:
    """fn(x − zero_point, weight, bias) (conv2d or linear on float copies) as exact int64.

    x: integer codes (the zero point is subtracted on the float copy); weight (out, in, ...) integers; bias
    (out,) integers or None.
    When `acc_bits` allows no float type, the input channels (x axis `split_axis`, weight axis 1) are cut into
    chunks whose own worst-case bound fits float64, and the chunk sums are added in int64.
    """
    dtype = float_dtype(acc_bits)
    if dtype is not None:
        x_float = x.to(dtype)
        if zero_point:
            x_float.sub_(zero_point)
        out = fn(x_float, weight.to(dtype), None if bias is None else bias.to(dtype))
        return out.to(torch.int64)
    if zero_point:
        x = x - zero_point
    if fn is not linear_fn and getattr(fn, "groups", 1) != 1:
        raise ConversionError(f"a grouped convolution with a {acc_bits}-bit accumulator bound has no exact float "
                              "path; declare a narrower accumulator")
    x_max = int(x.abs().max()) if x.numel() else 0
    per_input = int(weight.abs().flatten(2).sum(dim=2).max()) if weight.dim() > 2 else int(weight.abs().max())
    headroom = 2**53 - 1 - (int(bias.abs().max()) if bias is not None and bias.numel() else 0)
    per_chunk = max(1, headroom // max(1, x_max * per_input))
    channels = weight.shape[1]
    total: Tensor | None = None
    for start in range(0, channels, per_chunk):
        width = min(per_chunk, channels - start)
        chunk_bias = bias.to(torch.float64) if bias is not None and total is None else None  # once, first chunk
        part = fn(x.narrow(split_axis, start, width).to(torch.float64),
                  weight[:, start:start + width].to(torch.float64), chunk_bias).to(torch.int64)
        total = part if total is None else total + part
    assert total is not None
    return total


def matmul_exact(a: Tensor, b: Tensor, acc_bits: int) -> Tensor:
    """a @ b of integer tensors as exact int64 (float when the bound allows, else int64 chunks of K)."""
    dtype = float_dtype(acc_bits)
    if dtype is not None:
        return torch.matmul(a.to(dtype), b.to(dtype)).to(torch.int64)
    bound = max(1, int(a.abs().max()) * int(b.abs().max()))
    per_chunk = max(1, (2**53 - 1) // bound)
    k = a.shape[-1]
    total = torch.zeros(1, dtype=torch.int64)
    for start in range(0, k, per_chunk):
        width = min(per_chunk, k - start)
        total = total + torch.matmul(a.narrow(-1, start, width).to(torch.float64),
                                     b.narrow(-2, start, width).to(torch.float64)).to(torch.int64)
    return total


def requantize_inplace(acc: Tensor, multiplier: Tensor, shift: Tensor, out_zero_point: int, lo: int, hi: int) -> Tensor:
    """sat(asr(acc·M0 + 2^(n−1), n) + out_zp, lo, hi) computed in acc's own buffer (int64, owned by the caller).

    multiplier/shift: int64 tensors broadcastable to acc (per channel) or one element each; every n >= 1.
    """
    if multiplier.numel() == 1:
        m0, n = int(multiplier.reshape(())), int(shift.reshape(()))
        acc.mul_(m0).add_(1 << (n - 1)).bitwise_right_shift_(n)
    else:
        half = torch.bitwise_left_shift(torch.ones_like(shift), shift - 1)
        acc.mul_(multiplier).add_(half).bitwise_right_shift_(shift)
    if out_zero_point:
        acc.add_(out_zero_point)
    return acc.clamp_(lo, hi)


class Conv2dFn:
    """F.conv2d with fixed geometry, callable as fn(x, weight, bias)."""

    def __init__(self, stride: list[int], padding: list[int], dilation: list[int], groups: int) -> None:
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def __call__(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def linear_fn(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return F.linear(x, w, b)

