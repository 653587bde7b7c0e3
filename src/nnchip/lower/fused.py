"""Single-pass kernels for the interpreter's elementwise work (requantization, LayerNorm, softmax, tables),
compiled with numba when it is installed (`pip install nnchip[fast]`); without it the plan runs the same
arithmetic as chains of torch operations.

Each kernel performs, per element, exactly the float64 operations of the torch path it replaces — products,
sums, floors, IEEE division and square root, each correctly rounded, in the same order, with no fast-math
flags (so no fused multiply-add contraction and no reassociation) — so the exactness proofs of
`nnchip.lower.exact_float` and `nnchip.lower.plan` carry over unchanged, and a test compares both paths
tensor by tensor. What changes is the memory traffic: one read of the input and one write of the output
instead of four to ten full passes over float64 temporaries.

Kernels release the GIL; with more than one torch thread the softmax and LayerNorm rows are split across a
thread pool (see `_over_rows`).
`NNCHIP_FUSED=0` in the environment disables them (`nnchip.core.compiled`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nnchip.core.compiled import available, compiled, thread_pool

MIN_PARALLEL_ELEMENTS = 1 << 16


def usable(t: Tensor) -> bool:
    """The kernels are available and t is a non-empty tensor with at least one axis."""
    return available() and t.dim() > 0 and t.numel() > 0


# ---------------------------------------------------------------- kernels
# Reductions over exact integers accumulate in int64 (associative, so the compiler may vectorise them; the
# float64 sums of the torch paths are exact and therefore equal). Elementwise float64 steps keep the torch order.
# np.floor, not math.floor: numba's math.floor returns an int64, which wraps for values beyond 2^63 (a huge
# accumulator far outside the clamp window must still saturate).

def _requant(v: Any, m: Any, c: Any, lo: float, hi: float, shift: float, out: Any) -> None:  # pragma: no cover
    """out = clamp(floor(v·m[j] + c[j]), lo, hi) − shift; v, out: (rows, C)."""
    rows, channels = v.shape
    for i in range(rows):
        for j in range(channels):
            t = np.floor(float(v[i, j]) * m[j] + c[j])
            out[i, j] = min(max(t, lo), hi) - shift


def _split_requant(v: Any, low: Any, low_offset: Any, high: Any, constant: Any, scale: Any, lo: float, hi: float,
                   shift: float, out: Any) -> None:  # pragma: no cover - compiled
    """`exact_float.SplitRequant` per element: q = floor(v·Ml' + βMl') + K, y = clamp(floor((q + v·Mh)·2^−k))."""
    rows, channels = v.shape
    for i in range(rows):
        for j in range(channels):
            vij = float(v[i, j])
            q = np.floor(vij * low[j] + low_offset[j]) + constant[j]
            out[i, j] = min(max(np.floor((q + vij * high[j]) * scale[j]), lo), hi) - shift


def _layernorm(x: Any, low: Any, low_offset: Any, high: Any, constant: Any, scale: Any, lo: float, hi: float,
               shift: float, out: Any) -> None:  # pragma: no cover - compiled
    """`int_layernorm_core_float` then the split requant, row by row; x, out: (rows, C)."""
    rows, channels = x.shape
    y = np.empty(channels, dtype=np.int64)
    for i in range(rows):
        total = np.int64(0)
        for j in range(channels):
            total += np.int64(x[i, j])
        var = np.int64(0)
        for j in range(channels):
            yj = np.int64(x[i, j]) * channels - total
            y[j] = yj
            var += yj * yj
        std = max(np.floor(math.sqrt(float(var))), 1.0)
        half_factor = np.floor(2147483647.0 / std) * 0.5
        for j in range(channels):
            z = np.floor(float(y[j]) * half_factor)  # then the split requant of z, as in _split_requant
            q = np.floor(z * low[j] + low_offset[j]) + constant[j]
            out[i, j] = min(max(np.floor((q + z * high[j]) * scale[j]), lo), hi) - shift


def _softmax(x: Any, table: Any, width: int, numerator: float, total_max: float, out_scale: float, half: float,
             out: Any) -> None:  # pragma: no cover - compiled
    """The plan's `_Softmax` along the last axis, row by row; x, out: (rows, L); table: int64 exponentials."""
    rows, length = x.shape
    index = np.empty(length, dtype=np.int64)
    for i in range(rows):
        top = np.int64(x[i, 0])
        for j in range(1, length):
            top = max(top, np.int64(x[i, j]))
        total = np.int64(0)
        for j in range(length):
            index[j] = np.int64(x[i, j]) - top + width
            total += table[index[j]]
        factor = np.floor(numerator / min(max(float(total), 1.0), total_max)) * out_scale
        for j in range(length):
            out[i, j] = np.floor(float(table[index[j]]) * factor + half)


def _gather1(x: Any, table: Any, out: Any) -> None:  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        out[i] = table[x[i]]


def _gather2(a: Any, b: Any, table: Any, out: Any) -> None:  # pragma: no cover - compiled
    for i in range(a.shape[0]):
        out[i] = table[(np.int32(a[i]) << 8) | np.int32(b[i])]


# ---------------------------------------------------------------- dispatch

def _over_rows(kernel: Callable[..., None], arrays: list[np.ndarray], scalars: tuple[Any, ...],
               out: np.ndarray, row_arrays: int, *, parallel: bool = False) -> None:
    """kernel(*arrays, *scalars, out); with `parallel`, the first `row_arrays` arrays and `out` are split along
    axis 0 across torch's thread count.

    Only the row kernels with work per element (softmax, LayerNorm) go parallel: measured with 2 threads, the
    single-pass requantizations and gathers got slower split across a Python thread pool, whose thread then
    shares the cores with torch's OpenMP workers still spinning after the preceding GEMM."""
    kernel = compiled(kernel)
    workers = torch.get_num_threads()
    rows = out.shape[0]
    if not parallel or workers <= 1 or out.size < MIN_PARALLEL_ELEMENTS or rows < workers:
        kernel(*arrays, *scalars, out)
        return
    bounds = np.linspace(0, rows, workers + 1).astype(int)
    parts = [[a[start:stop] if n < row_arrays else a for n, a in enumerate(arrays)] + [*scalars, out[start:stop]]
             for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
    futures = [thread_pool(workers - 1).submit(kernel, *part) for part in parts[1:]]
    kernel(*parts[0])  # the calling thread takes the first part
    for future in futures:
        future.result()


def as_rows(t: Tensor, axis: int | None, channels: int) -> np.ndarray:
    """(rows, C) numpy view of t with the channel axis last (a copy only when the layout needs one); with axis
    None (per-tensor constants broadcast to C = t's last size) any row split works."""
    if axis is None:
        return t.contiguous().numpy().reshape(-1, channels)
    axis = axis % t.dim()
    if axis == t.dim() - 1:
        return t.contiguous().numpy().reshape(-1, channels)
    if t.dim() == 4 and axis == 1 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).numpy().reshape(-1, channels)
    return t.movedim(axis, -1).contiguous().numpy().reshape(-1, channels)


def _rows_and_output(v: Tensor, axis: int | None, channels: int, out_dtype: torch.dtype) -> tuple[np.ndarray, Tensor,
                                                                                                   np.ndarray]:
    """v's (rows, C) view, the output tensor and the output's (rows, C) view: the output is allocated with the
    channel axis last in memory, so `as_rows` views it without a copy."""
    axis_ = v.dim() - 1 if axis is None else axis % v.dim()
    if v.dim() == 4 and axis_ == 1 and v.is_contiguous(memory_format=torch.channels_last):
        out = torch.empty(v.shape, dtype=out_dtype, memory_format=torch.channels_last)
    else:
        out = torch.empty(v.movedim(axis_, -1).shape, dtype=out_dtype).movedim(-1, axis_)
    return as_rows(v, axis, channels), out, as_rows(out, axis, channels)


def per_channel(values: Tensor, channels: int) -> np.ndarray:
    """A per-channel constant (length 1 or C) as a contiguous float64 array of length C; callers keep it."""
    return np.ascontiguousarray(np.broadcast_to(values.numpy().reshape(-1), (channels,)), dtype=np.float64)


def requant(v: Tensor, axis: int | None, m: np.ndarray, c: np.ndarray, lo: int, hi: int, shift: int,
            out_dtype: torch.dtype) -> Tensor:
    """clamp(floor(v·m + c), lo, hi) − shift with `per_channel` m, c along `axis` (None: per-tensor constants
    repeated over t's last axis)."""
    rows, out, out_rows = _rows_and_output(v, axis, len(m), out_dtype)
    _over_rows(_requant, [rows, m, c], (float(lo), float(hi), float(shift)), out_rows, row_arrays=1)
    return out


def split_requant(v: Tensor, axis: int | None, columns: list[np.ndarray], lo: int, hi: int, shift: int,
                  out_dtype: torch.dtype) -> Tensor:
    """`SplitRequant` with its `per_channel` columns (low, low_offset, high, constant, scale) along `axis`."""
    rows, out, out_rows = _rows_and_output(v, axis, len(columns[0]), out_dtype)
    _over_rows(_split_requant, [rows, *columns], (float(lo), float(hi), float(shift)), out_rows, row_arrays=1)
    return out


def layernorm(x: Tensor, columns: list[np.ndarray], lo: int, hi: int, shift: int, out_dtype: torch.dtype) -> Tensor:
    """The exactly centred integer LayerNorm over the last axis, then `SplitRequant` with `per_channel` columns."""
    x2 = x.contiguous().numpy().reshape(-1, x.shape[-1])
    out = torch.empty(x.shape, dtype=out_dtype)
    _over_rows(_layernorm, [x2, *columns], (float(lo), float(hi), float(shift)), out.numpy().reshape(x2.shape),
               row_arrays=1, parallel=True)
    return out


def softmax(x: Tensor, table: np.ndarray, width: int, numerator: float, total_max: float, out_scale: float,
            half: float, out_dtype: torch.dtype) -> Tensor:
    """y = floor(e·(floor(numerator / clamp(Σe, 1, total_max))·out_scale) + half), e = table[x − max x + width],
    over the last axis."""
    x2 = x.contiguous().numpy().reshape(-1, x.shape[-1])
    out = torch.empty(x.shape, dtype=out_dtype)
    _over_rows(_softmax, [x2, table], (width, numerator, total_max, out_scale, half),
               out.numpy().reshape(x2.shape), row_arrays=1, parallel=True)
    return out


def as_bytes(x: Tensor) -> Tensor:
    """The stored bytes of an 8-bit tensor (an int8 value x reads as x mod 256)."""
    return x.view(torch.uint8) if x.dtype == torch.int8 else x


def gather_bytes(table: Tensor, args: list[Tensor]) -> Tensor:
    """table[byte] or table[byte_a·256 + byte_b] for one or two same-shape 8-bit inputs (their stored bytes)."""
    out = torch.empty(args[0].shape, dtype=table.dtype)
    flat = [as_bytes(x).contiguous().numpy().reshape(-1) for x in args]
    kernel = _gather1 if len(flat) == 1 else _gather2
    _over_rows(kernel, [*flat, table.numpy()], (), out.numpy().reshape(-1), row_arrays=len(flat))
    return out
