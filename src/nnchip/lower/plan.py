"""The interpreter's execution plan: per node, the fastest evaluation that a static bound proves exact.

Built once per IntGraph (cached while the graph is unchanged) by a static analysis over the graph:

- every tensor gets a proven value range (graph inputs: their type, checked at run time; saturating nodes:
  their clamp bounds; tables and constants: their extremes), which picks its storage dtype (uint8, int8,
  int16, int32 or int64 — the values, never a re-encoding) and bounds every accumulator;
- conv/linear/matmul get the weight-aware bound max_c(X·Σ_k|w[c,k]| + |bias[c]|) with X the largest
  |x − in_zp| the input range allows. Below 2^24 the reduction runs on oneDNN's u8×s8 int8 kernels (when
  `int8_backend.available()`) or in float32; above, it is split into input-channel chunks that each stay below
  2^24 and the chunks are added in int64 (float64 when no chunking exists and the bound is below 2^53,
  otherwise the integer reference). The accumulator check of the declared width runs only when this bound
  does not already prove it (`needs_check`), so it can fire exactly when a value could leave the width;
- requantization runs in float64 when `exact_float.window_exact` or `SplitRequant.build` proves it exact, else int64;
- both integer softmaxes become lookups indexed by the stored integers (the exponential table is the node's
  own table, or built with the contract's `int_exp_shift` for Shiftmax), small-range elementwise nodes become
  tables built by the reference evaluation itself, and exactly centred LayerNorm row statistics are computed on
  exact integers in float arithmetic with an exact integer square root.

Nodes without a proven fast path (other rounding modes, wide types, unknown ops) run the integer reference
evaluation that the interpreter passes in (`reference`).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nnchip.core.errors import ConversionError
from nnchip.core.int_nonlinear import INT31_MAX, SOFTMAX_RECIPROCAL_BITS, int_exp_shift
from nnchip.core.int_nonlinear_float import int_layernorm_core_float, layernorm_float_is_exact
from nnchip.core.intmath import requantize
from nnchip.lower import fused, int8_backend
from nnchip.lower.exact_float import (
    FLOAT32_EXACT,
    FLOAT64_EXACT,
    Saturation,
    SplitRequant,
    chunks_below,
    floor_saturate_,
    requant_in_float,
    store,
    window_exact,
)
from nnchip.lower.intgraph import IntGraph, IntNode

Range = tuple[int, int]


@dataclass
class Context:
    policy: str  # "error" or "report"
    overflows: list[str]
    batch: int


Step = Callable[[list[Tensor], Context], Tensor]


@dataclass
class Plan:
    fingerprint: tuple[Any, ...]
    steps: list[tuple[IntNode, Step]]
    storage: dict[str, torch.dtype]  # per tensor name
    ranges: dict[str, Range | None]
    paths: dict[str, str] = field(default_factory=dict)  # node name -> how it runs (for reports and tests)
    releases: dict[int, list[str]] = field(default_factory=dict)  # step index -> tensors last read there


def as_int64(value: Any) -> Any:
    """Stored values (any integer or exact-float dtype, or a tuple of them) as contiguous int64."""
    if isinstance(value, (tuple, list)):
        return type(value)(as_int64(v) for v in value)
    if value.dtype.is_floating_point:
        value = value.to(torch.int32 if value.dtype == torch.float32 else torch.int64)
    return value.to(torch.int64, memory_format=torch.contiguous_format)


def declared_bits(node: IntNode) -> int:
    return int(node.attrs.get("declared_acc_bits", node.attrs.get("acc_bits", 32)))


def check_accumulator(node: IntNode, acc: Tensor, context: Context) -> None:
    """Flag an accumulator outside the node's declared width: raise or record, per the run's policy."""
    bits = declared_bits(node)
    limit = 1 << (bits - 1)
    low, high = torch.aminmax(acc)
    if float(high) >= limit or float(low) < -limit:
        message = f"{node.attrs.get('source', node.name)}: accumulator outside {bits} bits"
        if context.policy == "error":
            raise ConversionError(message)
        if message not in context.overflows:  # once per node, also when the batch runs in slices
            context.overflows.append(message)


def apply_layout(node: IntNode, x: Tensor, batch: int) -> Tensor:
    def decode(value: object) -> object:
        if value == "batch":
            return batch
        if isinstance(value, dict) and "slice" in value:
            return slice(*value["slice"])
        if isinstance(value, dict) and value.get("ellipsis"):
            return Ellipsis
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    fn = node.attrs["fn"]
    args = [decode(a) for a in node.attrs["args"]]
    kwargs = {k: decode(v) for k, v in node.attrs["kwargs"].items()}
    if fn == "getitem":
        index = args[0]
        return x[tuple(index) if isinstance(index, list) else index]
    method = {"reshape": "reshape", "flatten": "flatten", "permute": "permute", "transpose": "transpose",
              "unflatten": "unflatten", "squeeze": "squeeze", "unsqueeze": "unsqueeze", "expand": "expand",
              "unbind": "unbind", "chunk": "chunk", "split": "split"}[fn]
    args = [tuple(a) if isinstance(a, list) else a for a in args]
    return getattr(x, method)(*args, **kwargs)


# ---------------------------------------------------------------- static analysis

_STORAGE = ((torch.uint8, 0, 255), (torch.int8, -128, 127), (torch.int16, -(2**15), 2**15 - 1),
            (torch.int32, -(2**31), 2**31 - 1))
_SATURATING = ("requant", "conv2d", "linear", "matmul", "add", "mean", "avgpool", "concat", "layernorm", "shift_gelu",
               "lut_gemm", "token_select")


def storage_dtype(value_range: Range | None) -> torch.dtype:
    """The narrowest integer dtype that holds the range (int64 when unknown)."""
    if value_range is not None:
        for dtype, low, high in _STORAGE:
            if low <= value_range[0] and value_range[1] <= high:
                return dtype
    return torch.int64


_VIEWS = ("identity", "layout")


def output_range(node: IntNode, ranges: dict[str, Range | None]) -> Range | None:
    """The range that node's output is proven to stay in (None: unknown)."""
    attrs = node.attrs
    if node.op in ("identity", "layout", "maxpool"):
        return ranges.get(node.inputs[0])
    if node.op in _SATURATING and "lo" in attrs and "hi" in attrs:
        return int(attrs["lo"]), int(attrs["hi"])
    if node.op == "constant" and node.params["value"].size:
        return int(node.params["value"].min()), int(node.params["value"].max())
    if node.op == "lut" and node.params["table"].size:
        return int(node.params["table"].min()), int(node.params["table"].max())
    if node.op == "softmax" and attrs["mode"] == "table":  # e·floor(2^52/Σe) <= 2^52, so y <= 2^(b−1)
        return 0, 1 << (int(attrs["out_bits"]) - 1)
    if node.op == "softmax":  # y = (e·floor((2^31−1)/sum)) >> (32 − b) <= max(2^31 − 1, max e) >> (32 − b)
        e_max = abs(int(attrs["x0"])) << int(attrs["n"])
        return 0, max(INT31_MAX, e_max) >> (32 - int(attrs["out_bits"]))
    return None


def magnitude(value_range: Range, zero_point: int = 0) -> int:
    """max |x − zero_point| over the range."""
    return max(abs(value_range[0] - zero_point), abs(value_range[1] - zero_point))


# ---------------------------------------------------------------- requantization

class Requant:
    """sat(round_shift((v + β[c])·M0[c], n[c]) + zp, lo, hi) of exact integers v along `axis`, HALF_UP.

    `v_max` bounds |v| and |v + β|. float64 when `window_exact` proves the one-product form exact, else
    `SplitRequant`, else int64.
    """

    def __init__(self, node: IntNode, v_max: int, out_dtype: torch.dtype, *, axis: int = 1, index: int | None = None,
                 multiplier: np.ndarray | None = None, offset: np.ndarray | None = None) -> None:
        m0 = np.asarray(node.params["multiplier"] if multiplier is None else multiplier, dtype=np.int64).ravel()
        shift = np.asarray(node.params["shift"], dtype=np.int64).ravel()
        if index is not None:
            m0, shift = m0[index:index + 1], shift[index:index + 1]
        self.zp = int(node.attrs["out_zero_point"])
        self.lo, self.hi = int(node.attrs["lo"]), int(node.attrs["hi"])
        self.m0, self.shift, self.axis, self.out_dtype = m0, shift, axis, out_dtype
        self.offset = None if offset is None else np.asarray(offset, dtype=np.int64)
        self.m = torch.from_numpy(np.ldexp(m0.astype(np.float64), -shift))  # exact: |M0| < 2^53
        t_max = v_max * float(self.m.abs().max()) + abs(self.zp) + 1  # bounds |v·m + zp + 1/2|
        self.split: SplitRequant | None = None
        self._fused: dict[int, list[np.ndarray]] = {}
        self.half_up_offset = torch.tensor([self.zp + 0.5], dtype=torch.float64)
        self.saturation = Saturation(self.lo, self.hi, out_dtype, t_max)
        shifted = self.saturation.shift
        if not window_exact(shift, self.zp + shifted, self.lo + shifted, self.hi + shifted):
            self.saturation = Saturation(self.lo, self.hi, out_dtype, t_max, may_shift=False)
        if v_max < FLOAT64_EXACT and self.offset is None and window_exact(shift, self.zp, self.lo, self.hi):
            self.mode = "float64"
        elif v_max < FLOAT64_EXACT and (split := SplitRequant.build(v_max, m0, shift, self.zp, self.lo, self.hi,
                                                                    self.offset, out_dtype)) is not None:
            self.mode, self.split = "float64-split", split
        else:
            self.mode = "int64"

    def fused_columns(self, v: Tensor, axis: int | None, columns: list[Tensor]) -> list[np.ndarray]:
        """The per-channel constants of the fused kernels for v's channel count, built once per count."""
        channels = v.shape[-1] if axis is None else v.shape[axis]
        cached = self._fused.get(channels)
        if cached is None:
            cached = self._fused[channels] = [fused.per_channel(column, channels) for column in columns]
        return cached

    def _view(self, values: Tensor, ndim: int) -> Tensor:
        if values.numel() == 1:
            return values.reshape(())
        shape = [1] * ndim
        shape[self.axis] = -1
        return values.reshape(shape)

    def __call__(self, v: Tensor, *, owned: bool = False) -> Tensor:
        if self.mode == "float64":
            if fused.usable(v):
                axis = None if self.m.numel() == 1 else self.axis
                m, c = self.fused_columns(v, axis, [self.m, self.half_up_offset])
                return fused.requant(v, axis, m, c, self.lo, self.hi, 0, self.out_dtype)
            return requant_in_float(v, self._view(self.m, v.dim()), self.zp + 0.5, self.saturation, owned=owned)
        if self.split is not None:
            if fused.usable(v):
                axis = None if self.split.low.numel() == 1 else self.axis
                columns = self.fused_columns(v, axis, self.split.columns())
                return fused.split_requant(v, axis, columns, *self.split.shifted_window(), self.out_dtype)
            return self.split(v.to(torch.float64), lambda column: self._view(column, v.dim()))
        v = as_int64(v)
        if self.offset is not None:
            v = v + self._view(torch.from_numpy(self.offset), v.dim())
        multiplier = self._view(torch.from_numpy(self.m0), v.dim())
        shift = self._view(torch.from_numpy(self.shift), v.dim())
        y = requantize(v, multiplier, shift, out_zero_point=self.zp, lo=self.lo, hi=self.hi)
        return y.to(self.out_dtype)


# ---------------------------------------------------------------- node kinds

def _to_float(x: Tensor, dtype: torch.dtype, subtract: int = 0) -> Tensor:
    y = x.to(dtype)
    return y.sub_(subtract) if subtract else y


class _Gemm:
    """conv2d / linear: acc = Σ (x − in_zp)·w + bias, checked, requantized per output channel."""

    def __init__(self, node: IntNode, x_range: Range, out_dtype: torch.dtype) -> None:
        attrs = node.attrs
        self.node, self.op = node, node.op
        self.zp = int(attrs["in_zero_point"])
        weight = np.asarray(node.params["weight"], dtype=np.int64)
        bias = np.asarray(node.params["bias"], dtype=np.int64)
        channels = weight.shape[0]
        x_max = magnitude(x_range, self.zp)
        per_k = x_max * np.abs(weight.reshape(channels, weight.shape[1], -1)).sum(axis=2)  # (C, K), K: in channels
        bound = int((per_k.sum(axis=1) + np.abs(bias)).max(initial=0))  # max_c X·Σ|w[c]| + |bias[c]|
        self.bound = bound
        self.needs_check = bound >= 1 << (declared_bits(node) - 1)
        self.weight, self.bias = torch.from_numpy(weight), torch.from_numpy(bias)
        axis = 1 if self.op == "conv2d" else -1
        self.requant = Requant(node, bound, out_dtype, axis=axis)
        self.conv_args = ((attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])
                          if self.op == "conv2d" else ())
        self.offset = 0
        self.kernel: Callable[[Tensor], Tensor] | None = None
        self.chunks: list[tuple[int, int]] | None = None
        groups = int(attrs.get("groups", 1))
        offset = -x_range[0] if x_range[0] < 0 else 0
        if (bound < FLOAT32_EXACT and x_range[1] + offset <= 255 and int(weight.min(initial=0)) >= -128
                and int(weight.max(initial=0)) <= 127 and int8_backend.available()):
            self.offset = offset
            if self.op == "conv2d":
                stride, padding, dilation, _ = self.conv_args
                self.kernel = int8_backend.Int8Conv2d(self.weight, self.bias, self.zp + offset, list(stride),
                                                      list(padding), list(dilation), groups)
            else:
                self.kernel = int8_backend.Int8Linear(self.weight, self.bias, self.zp + offset)
            self.path = "int8"
        elif bound < FLOAT32_EXACT:
            self.path = "float32"
        elif groups == 1 and (chunks := chunks_below(per_k, FLOAT32_EXACT - 1)) is not None:
            self.path, self.chunks = "float32-chunks", chunks
        elif bound < FLOAT64_EXACT:
            self.path = "float64"
        else:
            self.path = "reference"
        self.float_weight = self.weight.to(torch.float64 if self.path == "float64" else torch.float32)
        self.float_bias = self.bias.to(self.float_weight.dtype)

    def _reduce(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.op == "conv2d":
            stride, padding, dilation, groups = self.conv_args
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        return F.linear(x, weight, bias)

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        x = args[0]
        if self.kernel is not None:
            if not (x.dtype == torch.uint8 and self.offset == 0):
                x = torch.add(x.to(torch.int16), self.offset).to(torch.uint8)
            acc = self.kernel(x)
        elif self.path == "float32-chunks":
            xf = _to_float(x, torch.float32, self.zp)
            axis = 1 if self.op == "conv2d" else -1
            acc = self.bias.reshape([1, -1] + [1] * (xf.dim() - 2) if self.op == "conv2d" else [-1]).clone()
            for start, stop in self.chunks or ():
                part = self._reduce(xf.narrow(axis, start, stop - start),
                                    self.float_weight.narrow(1, start, stop - start), None)
                acc = acc + part.to(torch.int64)
        else:
            acc = self._reduce(_to_float(x, self.float_weight.dtype, self.zp), self.float_weight, self.float_bias)
        if self.needs_check:
            check_accumulator(self.node, acc, context)
        return self.requant(acc, owned=acc.dtype == torch.float64)


class _Matmul:
    """acc = a @ b (zero points 0) in float32 when Xa·Xb·K < 2^24, in K-chunks added in int64 otherwise."""

    def __init__(self, node: IntNode, a_range: Range, b_range: Range, reduction: int, out_dtype: torch.dtype) -> None:
        self.node, self.reduction = node, reduction
        per_k = magnitude(a_range) * magnitude(b_range)
        self.bound = per_k * reduction
        self.needs_check = self.bound >= 1 << (declared_bits(node) - 1)
        self.chunk = max(1, (FLOAT32_EXACT - 1) // per_k) if per_k else reduction
        self.float_dtype = torch.float32 if per_k < FLOAT32_EXACT else torch.float64
        self.requant = Requant(node, self.bound, out_dtype, axis=-1)

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        a, b = (x.to(self.float_dtype) for x in args)
        k = a.shape[-1]
        if self.float_dtype == torch.float64 or self.bound < FLOAT32_EXACT or self.chunk >= k:
            acc = torch.matmul(a, b)
        else:
            acc = sum((torch.matmul(a[..., s:s + self.chunk], b[..., s:s + self.chunk, :]).to(torch.int64)
                       for s in range(0, k, self.chunk)), torch.zeros((), dtype=torch.int64))
        if self.needs_check:
            check_accumulator(self.node, acc, context)
        return self.requant(acc)


class _Add:
    """t_i = round_shift((x_i − zp_i)·M0_i, n_i − F); y = sat(round_shift(t_a + t_b, F) + zp, lo, hi), in float64.

    Exact when every |x_i − zp_i|·M0_i < 2^52 (the products, the half-up offsets and the sum are integers or
    halves below 2^53); `exact` says whether the plan proved it.
    """

    def __init__(self, node: IntNode, ranges: list[Range], out_dtype: torch.dtype) -> None:
        attrs = node.attrs
        self.frac = int(attrs["frac_bits"])
        self.zps = [int(z) for z in attrs["zero_points"]]
        m0 = [int(v) for v in node.params["multiplier"]]
        shifts = [int(v) for v in node.params["shift"]] if node.params["shift"].size == len(m0) else []
        self.exact = len(shifts) == 2 and all(
            magnitude(r, z) * m < 2**52 and n - self.frac >= 0 for r, z, m, n in zip(ranges, self.zps, m0, shifts,
                                                                                    strict=True))
        self.scales = [float(np.ldexp(float(m), -(n - self.frac))) for m, n in zip(m0, shifts, strict=False)]
        self.lo, self.hi, self.out_zp = int(attrs["lo"]), int(attrs["hi"]), int(attrs["out_zero_point"])
        self.out_dtype = out_dtype

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        total: Tensor | None = None
        for x, zp, scale in zip(args, self.zps, self.scales, strict=True):
            t = x.to(torch.float64)
            if zp:
                t.sub_(zp)
            t.mul_(scale).add_(0.5).floor_()  # round_shift((x − zp)·M0, n − F): x·M0 exact, ·2^−(n−F) exact
            total = t if total is None else total.add_(t)
        assert total is not None
        return floor_saturate_(total.mul_(2.0**-self.frac).add_(self.out_zp + 0.5), self.lo, self.hi, self.out_dtype)


class _Mean:
    """s = Σ_window (x − in_zp) (exact in float64), then requant."""

    def __init__(self, node: IntNode, x_range: Range, out_dtype: torch.dtype, target: tuple[int, ...]) -> None:
        attrs = node.attrs
        self.node, self.zp, self.count, self.target = node, int(attrs["in_zero_point"]), int(attrs["count"]), target
        self.requant = Requant(node, magnitude(x_range, self.zp) * self.count, out_dtype)
        self.exact = magnitude(x_range, self.zp) * self.count < FLOAT64_EXACT

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        x = args[0]
        attrs = self.node.attrs
        if self.node.op == "mean":
            total = x.sum(dim=attrs["dims"], keepdim=True, dtype=torch.float64)
        else:
            xf = x.to(torch.float64)
            total = F.avg_pool2d(xf, attrs["kernel"], attrs["stride"], divisor_override=1)
        if self.zp:
            total.sub_(self.zp * self.count)
        if self.node.op == "mean" and self.target:
            total = total.reshape((x.shape[0], *self.target[1:]))
        return self.requant(total, owned=True)


class _Softmax:
    """Integer softmax with e = E[max_row x − x] read from one table over the input's range of distances, exact in
    float64 (Σe < 2^53 is checked; every other quantity below is an integer or half below 2^53):

    - "shiftmax": E built with the contract's int_exp_shift; sum = min(Σe, 2^31 − 1),
      y = floor(e·floor((2^31 − 1)/sum) / 2^(32 − b)), and e·floor((2^31 − 1)/sum) <= max(2^31 − 1, e);
    - "table": E = the node's exp table T[min(d, len(T) − 1)]; f = floor(2^52/Σe) (a correctly rounded quotient
      below 2^52 floors exactly), y = floor((e·f + 2^(s−1)) / 2^s) with s = 52 − (b − 1), and e·f <= 2^52.

    0 <= y <= the proven output bound, so no clamp.
    """

    def __init__(self, node: IntNode, x_range: Range, row: int, out_dtype: torch.dtype) -> None:
        attrs = node.attrs
        self.dim, self.out_dtype, out_bits = int(attrs["dim"]), out_dtype, int(attrs["out_bits"])
        self.width = width = x_range[1] - x_range[0]  # d = max − x lies in [0, width]
        distance = torch.arange(width + 1, dtype=torch.int64)
        self.by_table = attrs["mode"] == "table"
        if self.by_table:
            exp_table = torch.from_numpy(node.params["table"]).to(torch.int64)
            e_of_d = exp_table[distance.clamp(max=exp_table.numel() - 1)]
            self.out_shift = SOFTMAX_RECIPROCAL_BITS - (out_bits - 1)
        else:
            e_of_d = int_exp_shift(-distance, int(attrs["x0"]), int(attrs["n"]))
            self.out_shift = 32 - out_bits
        self.table = e_of_d.flip(0).to(torch.float64)  # index i <-> difference x − max = i − width
        self.int_table = e_of_d.flip(0).numpy().astype(np.int64)
        # 8-bit storage: (x − max) mod 256 indexes a 256-entry table directly (j > 0 <-> distance 256 − j)
        self.wrapped = None
        if width <= 255:
            wrapped = torch.zeros(256, dtype=torch.float64)
            wrapped[0] = self.table[width]
            j = torch.arange(256 - width, 256)
            wrapped[j] = self.table[j - 256 + width]
            self.wrapped = wrapped
        self.exact = int(e_of_d.max()) * row < FLOAT64_EXACT

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        x = args[0]
        if fused.usable(x) and self.dim % x.dim() == x.dim() - 1:
            if self.by_table:
                return fused.softmax(x, self.int_table, self.width, 2.0**SOFTMAX_RECIPROCAL_BITS, math.inf,
                                     2.0**-self.out_shift, 0.5, self.out_dtype)
            return fused.softmax(x, self.int_table, self.width, float(INT31_MAX), float(INT31_MAX),
                                 2.0**-self.out_shift, 0.0, self.out_dtype)
        if self.wrapped is not None and x.dtype in (torch.uint8, torch.int8):
            top = x.amax(dim=self.dim, keepdim=True)
            if x.dtype == torch.int8:
                x, top = x.view(torch.uint8), top.view(torch.uint8)
            e = gather(self.wrapped, torch.sub(x, top).to(torch.int32))  # uint8 arithmetic wraps mod 256
        else:
            x = as_int64(x)
            e = gather(self.table, (x - x.amax(dim=self.dim, keepdim=True) + self.width).to(torch.int32))
        if self.by_table:
            total = e.sum(dim=self.dim, keepdim=True).clamp_(min=1)
            factor = torch.floor_divide(torch.full_like(total, 2.0**SOFTMAX_RECIPROCAL_BITS), total)
            return store(e.mul_(factor.mul_(2.0**-self.out_shift)).add_(0.5), self.out_dtype)  # >= 0: truncation floors
        total = e.sum(dim=self.dim, keepdim=True).clamp_(1, INT31_MAX)
        factor = torch.floor_divide(torch.full_like(total, INT31_MAX), total).mul_(2.0**-self.out_shift)
        return store(e.mul_(factor), self.out_dtype)


class _Table:
    """An elementwise node over small input ranges as one lookup table, built by the reference evaluation itself
    on the grid of every input combination (so it is exact by construction): y = T[Σ_i (x_i − lo_i)·stride_i].

    When every input is stored in 8 bits, the table is indexed by the stored bytes instead (`wrapped`): an int8
    value is read as its byte (x mod 256), so the index is Σ_i byte_i·256^(k−1−i) — no offset and no multiply
    pass; the bytes no input value can hold map to 0 and are never read.
    """

    MAX_ENTRIES = 1 << 18

    def __init__(self, node: IntNode, step: Step, in_ranges: list[Range], out_dtype: torch.dtype) -> None:
        widths = [hi - lo + 1 for lo, hi in in_ranges]
        grids = []
        for i, (lo, hi) in enumerate(in_ranges):
            shape = [1] * len(in_ranges)
            shape[i] = -1
            grids.append(torch.arange(lo, hi + 1, dtype=torch.int64).reshape(shape))
        table = as_int64(step(grids, Context("report", [], 1)))
        compact = table.expand(widths).reshape(-1).to(out_dtype)
        self.strides = [int(np.prod(widths[i + 1:])) for i in range(len(widths))]
        self.base = sum(lo * stride for (lo, _), stride in zip(in_ranges, self.strides, strict=True))
        self.wrapped = (all(storage_dtype(r) in (torch.uint8, torch.int8) for r in in_ranges)
                        and 256 ** len(in_ranges) <= self.MAX_ENTRIES)
        self.table = self._by_bytes(compact, in_ranges) if self.wrapped else compact

    def _by_bytes(self, compact: Tensor, in_ranges: list[Range]) -> Tensor:
        index, valid = torch.zeros((), dtype=torch.int64), torch.ones((), dtype=torch.bool)
        for i, (lo, hi) in enumerate(in_ranges):
            shape = [1] * len(in_ranges)
            shape[i] = -1
            byte = torch.arange(256, dtype=torch.int64)
            value = byte if storage_dtype((lo, hi)) == torch.uint8 else torch.where(byte >= 128, byte - 256, byte)
            index = index + ((value - lo) * self.strides[i]).reshape(shape)
            valid = valid & ((value >= lo) & (value <= hi)).reshape(shape)
        entries = compact[index.clamp(0, compact.numel() - 1)]
        return torch.where(valid, entries, torch.zeros((), dtype=compact.dtype)).reshape(-1)

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        if self.wrapped and fused.usable(args[0]) and len(args) <= 2 and all(x.shape == args[0].shape for x in args):
            return fused.gather_bytes(self.table, args)
        if self.wrapped:
            index = fused.as_bytes(args[-1]).to(torch.int32)
            for position, x in enumerate(reversed(args[:-1]), start=1):
                byte = fused.as_bytes(x)
                if byte.shape == index.shape:
                    index.add_(byte, alpha=256**position)
                else:  # broadcast operands
                    index = torch.add(index, byte, alpha=256**position)
            return gather(self.table, index)
        index = args[0].to(torch.int32)
        if self.strides[0] != 1:
            index.mul_(self.strides[0])
        for x, stride in zip(args[1:], self.strides[1:], strict=True):
            index = torch.add(index, x, alpha=stride) if stride != 1 else torch.add(index, x)
        if self.base:
            index.sub_(self.base)
        return gather(self.table, index)


def gather(table: Tensor, index: Tensor) -> Tensor:
    """table[index] for an int32 index tensor, keeping a channels-last index's memory layout."""
    if index.dim() == 4 and not index.is_contiguous() and index.is_contiguous(memory_format=torch.channels_last):
        physical = index.permute(0, 2, 3, 1)
        return table.index_select(0, physical.reshape(-1)).view(physical.shape).permute(0, 3, 1, 2)
    return table.index_select(0, index.reshape(-1)).view(index.shape)


class _LayerNorm:
    """int_layernorm_core ("exact" centring) in exact float64 arithmetic, then the per-channel requant.

    y = C·x − Σx (|y| <= C·W for an input range of width W), var = Σy² <= C³·W² < 2^52 (checked), so the
    correctly rounded square root floors to isqrt(var) exactly; std = max(isqrt(var), 1),
    f = floor((2^31 − 1)/std), z = floor(y·f/2) with |y| <= std, so |y·f| < 2^31 — all integers below 2^53.
    Then requant of s·(z + β): the sign s is folded into the multiplier (M0·s) and β into the requant's offset,
    which `SplitRequant` handles.
    """

    def __init__(self, node: IntNode, x_range: Range, channels: int, out_dtype: torch.dtype) -> None:
        self.node, self.channels = node, channels
        negate = np.asarray(node.params["negate"]).astype(bool)
        beta = np.asarray(node.params["beta"], dtype=np.int64)
        width = x_range[1] - x_range[0]
        v_max = (1 << 30) + int(np.abs(beta).max(initial=0))  # |y| <= isqrt(Σy²) = std, so |y·f| < 2^31
        signed = np.where(negate, -1, 1) * np.asarray(node.params["multiplier"], dtype=np.int64)
        self.requant = Requant(node, v_max, out_dtype, axis=-1, multiplier=signed, offset=beta)
        self.exact = (node.attrs.get("sqrt_mode", "exact") == "exact" and layernorm_float_is_exact(channels, width)
                      and channels * max(abs(x_range[0]), abs(x_range[1])) < 2**52)

    def __call__(self, args: list[Tensor], context: Context) -> Tensor:
        split = self.requant.split
        if split is not None and fused.usable(args[0]):
            columns = self.requant.fused_columns(args[0], -1, split.columns())
            return fused.layernorm(args[0], columns, *split.shifted_window(), self.requant.out_dtype)
        return self.requant(int_layernorm_core_float(args[0]), owned=True)  # z = asr(y·f, 1), float64


# ---------------------------------------------------------------- plan construction

_ELEMENTWISE = ("add", "requant", "lut")  # no per-channel parameters: y depends on the input values only


def _fast_step(graph: IntGraph, node: IntNode, ranges: dict[str, Range | None], storage: dict[str, torch.dtype],
               reference: Step) -> tuple[Step, str] | None:
    """The proven fast evaluation of one node and its name, or None for the reference path."""
    op, attrs = node.op, node.attrs
    in_ranges = [ranges.get(name) for name in node.inputs]
    out_dtype = storage[node.output]
    if op in ("identity", "layout"):
        return (lambda args, ctx: args[0], "view") if op == "identity" else \
            (lambda args, ctx: apply_layout(node, args[0], ctx.batch), "view")
    if attrs.get("rounding", "half_up") != "half_up" or any(r is None for r in in_ranges):
        return None
    ranges_known: list[Range] = [r for r in in_ranges if r is not None]
    entries = int(np.prod([hi - lo + 1 for lo, hi in ranges_known]))
    per_channel = op == "requant" and node.params["multiplier"].size > 1
    if op in _ELEMENTWISE and not per_channel and entries <= _Table.MAX_ENTRIES:
        return _Table(node, reference, ranges_known, out_dtype), "table"
    if op in ("conv2d", "linear"):
        gemm = _Gemm(node, ranges_known[0], out_dtype)
        return (gemm, f"{gemm.path}+{gemm.requant.mode}") if gemm.path != "reference" else None
    if op == "matmul":
        shape = graph.tensors[node.inputs[0]].shape
        if not shape:
            return None
        matmul = _Matmul(node, ranges_known[0], ranges_known[1], int(shape[-1]), out_dtype)
        return (matmul, f"float+{matmul.requant.mode}") if matmul.bound < FLOAT64_EXACT else None
    if op == "requant":
        zp = int(attrs["in_zero_point"])
        requant = Requant(node, magnitude(ranges_known[0], zp), out_dtype)
        return (lambda args, ctx: requant(_to_float(args[0], torch.float64, zp), owned=True)), requant.mode
    if op == "add":
        add = _Add(node, ranges_known, out_dtype)
        return (add, "float64") if add.exact else None
    if op in ("mean", "avgpool"):
        mean = _Mean(node, ranges_known[0], out_dtype, tuple(graph.tensors[node.output].shape))
        return (mean, f"float64+{mean.requant.mode}") if mean.exact else None
    if op == "concat":
        parts = [Requant(node, magnitude(r, int(zp)), out_dtype, index=i)
                 for i, (r, zp) in enumerate(zip(ranges_known, attrs["zero_points"], strict=True))]
        zps = [int(zp) for zp in attrs["zero_points"]]

        def concat(args: list[Tensor], ctx: Context) -> Tensor:
            return torch.cat([part(_to_float(x, torch.float64, zp), owned=True)
                              for part, x, zp in zip(parts, args, zps, strict=True)], dim=int(attrs["dim"]))

        return concat, "float64"
    if op == "softmax":
        shape = graph.tensors[node.inputs[0]].shape
        out_range = ranges[node.output]
        if not shape or out_range is None:
            return None
        softmax = _Softmax(node, ranges_known[0], int(shape[int(attrs["dim"])]), out_dtype)
        return (softmax, "table") if softmax.exact else None
    if op == "layernorm":
        shape = graph.tensors[node.inputs[0]].shape
        if not shape:
            return None
        norm = _LayerNorm(node, ranges_known[0], int(shape[-1]), out_dtype)
        return (norm, f"float+{norm.requant.mode}") if norm.exact else None
    return None


def build_plan(graph: IntGraph, reference: Callable[[IntGraph, IntNode], Step]) -> Plan:
    ranges: dict[str, Range | None] = {}
    for name in graph.inputs:
        spec = graph.tensors[name].spec
        ranges[name] = (spec.qmin, spec.qmax)
    for node in graph.nodes:
        ranges[node.output] = output_range(node, ranges)
    storage = {name: storage_dtype(value_range) for name, value_range in ranges.items()}
    steps: list[tuple[IntNode, Step]] = []
    paths: dict[str, str] = {}
    for node in graph.nodes:
        ref = reference(graph, node)
        fast = _fast_step(graph, node, ranges, storage, ref)
        if fast is None:
            steps.append((node, _narrowed(ref, storage[node.output])))
            paths[node.name] = "reference"
        else:
            sliced = _batch_sliceable(graph, node)
            if sliced:
                sample = max(int(np.prod(graph.tensors[name].shape[1:])) for name in (node.output, *node.inputs))
                steps.append((node, _in_batch_slices(fast[0], sliced, max(1, SLICE_ELEMENTS // max(sample, 1)))))
            else:
                steps.append((node, fast[0]))
            paths[node.name] = fast[1]
    return Plan(fingerprint(graph), steps, storage, ranges, paths, last_reads(graph))


SLICE_ELEMENTS = 1 << 18  # per slice: float64 temporaries of ~1 MB stay in cache and are not freshly mapped


def _batch_sliceable(graph: IntGraph, node: IntNode) -> list[bool] | None:
    """Which inputs to slice along dim 0 when the node may run on batch slices (None: it may not).

    A node may when dim 0 is the batch of its output and of every sliced input, and no reduction or
    concatenation runs along it; inputs broadcast along dim 0 (size 1, or fewer dims) stay whole.
    """
    out_shape = graph.tensors[node.output].shape
    if node.op not in ("conv2d", "linear", "matmul", "requant", "add", "mean", "avgpool", "concat", "softmax",
                       "lut", "layernorm") or len(out_shape) < 2:
        return None
    ndim = len(out_shape)
    attrs = node.attrs
    if node.op == "softmax" and int(attrs["dim"]) % ndim == 0:
        return None
    if node.op == "concat" and int(attrs["dim"]) % ndim == 0:
        return None
    if node.op == "mean" and any(int(d) % len(graph.tensors[node.inputs[0]].shape) == 0 for d in attrs["dims"]):
        return None
    shapes = [graph.tensors[name].shape for name in node.inputs]
    if node.op == "matmul":  # batched operands share dim 0; a 2-D right operand is the same for every row
        return [True, len(shapes[1]) == ndim and len(shapes[0]) == ndim and ndim >= 3]
    sliced = [len(shape) == ndim and shape[0] == out_shape[0] and shape[0] != 1 for shape in shapes]
    return sliced if sliced and sliced[0] else None


def _in_batch_slices(step: Step, sliced: list[bool], rows: int) -> Step:
    """Run a per-sample step on slices of `rows` samples (so that its temporaries stay small)."""

    def run(args: list[Tensor], context: Context) -> Tensor:
        batch = args[0].shape[0]
        if rows >= batch or fused.available():  # the fused kernels make no large temporaries
            return step(args, context)
        out: Tensor | None = None
        for start in range(0, batch, rows):
            part = step([a[start:start + rows] if cut else a for a, cut in zip(args, sliced, strict=True)], context)
            if out is None:
                channels_last = part.dim() == 4 and not part.is_contiguous() and part.is_contiguous(
                    memory_format=torch.channels_last)
                out = torch.empty((batch, *part.shape[1:]), dtype=part.dtype, memory_format=torch.channels_last
                                  if channels_last else torch.contiguous_format)
            out[start:start + rows] = part
        assert out is not None
        return out

    return run


def last_reads(graph: IntGraph) -> dict[int, list[str]]:
    """Node index -> the tensors (neither graph outputs nor unread) whose last reader is that node."""
    last: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            last[name] = index
    releases: dict[int, list[str]] = {}
    for name, index in last.items():
        if name not in graph.outputs:
            releases.setdefault(index, []).append(name)
    return releases


def reference_plan(graph: IntGraph, reference: Callable[[IntGraph, IntNode], Step]) -> Plan:
    """Every node on its reference evaluation, every tensor stored as int64 (no caching)."""
    storage = {name: torch.int64 for name in graph.tensors}
    steps = [(node, reference(graph, node)) for node in graph.nodes]
    return Plan(fingerprint(graph), steps, storage, {}, {node.name: "reference" for node in graph.nodes},
                last_reads(graph))


def _narrowed(step: Step, dtype: torch.dtype) -> Step:
    if dtype == torch.int64:
        return step
    return lambda args, ctx: as_narrow(step(args, ctx), dtype)


def as_narrow(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(as_narrow(v, dtype) for v in value)
    return value.to(dtype)


def fingerprint(graph: IntGraph) -> tuple[Any, ...]:
    """What the plan depends on: node identities, ops, wiring, attribute values (an attribute set to a new value
    counts; a list attribute edited in place does not — replace it), parameter arrays, tensor types."""
    nodes = tuple((id(n), n.op, tuple(n.inputs), n.output, tuple(n.attrs.items()),
                   tuple((k, id(v), v.shape) for k, v in n.params.items())) for n in graph.nodes)
    tensors = tuple((name, t.spec, t.zero_point, tuple(t.shape)) for name, t in graph.tensors.items())
    return nodes, tensors, tuple(graph.inputs), tuple(graph.outputs)


_PLANS: dict[int, Plan] = {}


def plan_for(graph: IntGraph, reference: Callable[[IntGraph, IntNode], Step]) -> Plan:
    """The cached plan of this graph object, rebuilt when its fingerprint changed."""
    key = id(graph)
    plan = _PLANS.get(key)
    current = fingerprint(graph)
    if plan is None or plan.fingerprint != current:
        if plan is None:
            weakref.finalize(graph, _PLANS.pop, key, None)
        plan = build_plan(graph, reference)
        _PLANS[key] = plan
    return plan


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """float32 matmul/conv at full IEEE precision (no TF32/BF32 shortcuts) for the duration of a run."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
