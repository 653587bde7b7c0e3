"""The quantized model's integer deploy forward: runs a QModel's own graph on integers.

An implementation of the integer contract independent of the lowering: it walks `qmodel.gm` directly,
fuses each quantizer with the op that produces its values, and computes with `nnchip.core` primitives. It
imports nothing from `nnchip.lower` or `nnchip.export` (a test enforces this); the three implementations
(this, the IntGraph interpreter, the export's numpy reader) must agree on every tensor, 0 LSB apart.

Result: {quantizer node name: int64 tensor} — the same names the IntGraph gives its tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx

from nnchip.core.errors import UnsupportedError
from nnchip.core.int_nonlinear import (
    SHIFT_GELU_SIGMA_BITS,
    exp_shift_x0,
    int_layernorm_core,
    shift_gelu,
    shift_gelu_x0,
    shiftmax,
    softmax_exp_table,
    table_softmax,
)
from nnchip.core.intmath import quantize_multiplier, quantize_multipliers, requantize, round_shift, saturate
from nnchip.core.op_kinds import CLAMP_KINDS, ELEMENTWISE_KINDS, LAYOUT_KINDS, elementwise_function, scale_factor
from nnchip.core.token_select import token_select
from nnchip.quant.base import Quantizer
from nnchip.quant.quantize import QModel
from nnchip.vq.integer import (
    encode_int,
    gather_accumulate,
    im2col_rows,
    integer_bias,
    integer_codebooks,
    integer_tables,
)
from nnchip.vq.layer import LUTLayer

ADD_FRAC_BITS = 16  # alignment precision of residual adds (the lowering's default add_frac_bits)


@dataclass
class _Q:
    """An integer tensor with its (real) scale and zero point."""

    data: Tensor
    scale: float
    zero_point: int


def _per_channel(values: Tensor, ndim: int, axis: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def _requant_to(acc: Tensor, real: Tensor | float, out: _Q, lo: int, hi: int, axis: int = 1, in_zp: int = 0) -> Tensor:
    if isinstance(real, Tensor) and real.numel() > 1:
        m0, n = quantize_multipliers(real)
        m0, n = _per_channel(m0, acc.dim(), axis), _per_channel(n, acc.dim(), axis)
    else:
        m0, n = quantize_multiplier(float(real))
    return requantize(acc, m0, n, in_zero_point=in_zp, out_zero_point=out.zero_point, lo=lo, hi=hi)


class _Deployer:
    def __init__(self, qmodel: QModel) -> None:
        self.gm = qmodel.gm
        self.softmax_impl = qmodel.config.softmax_impl
        self.gelu_impl = qmodel.config.gelu_impl
        self.env: dict[fx.Node, Any] = {}

    def module(self, node: fx.Node) -> Any:
        return self.gm.get_submodule(str(node.target))

    def run(self, x_int: Tensor) -> dict[str, Tensor]:
        outputs: dict[str, Tensor] = {}
        for node in self.gm.graph.nodes:
            kind = node.meta.get("nnchip_kind")
            if kind == "quantize":
                q = self.quantizer_output(node, x_int)
                self.env[node] = q
                outputs[node.name] = q.data
            elif kind in LAYOUT_KINDS or kind in ("meta", "scale", "maxpool2d"):
                self.env[node] = self.value_preserving(node, kind)
        return outputs

    def value_preserving(self, node: fx.Node, kind: str) -> Any:
        args = fx.node.map_arg(node.args, lambda n: self.env.get(n))
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.env.get(n))
        if kind == "meta":
            first = args[0]
            if isinstance(first, _Q):
                args = (first.data, *args[1:])
            return node.target(*args, **kwargs) if node.op == "call_function" else getattr(args[0], node.target)(
                *args[1:], **kwargs)
        if kind == "getitem" and isinstance(args[0], list):  # one tensor of an unbind/split/chunk
            return args[0][args[1]]
        source = next((a for a in args if isinstance(a, _Q)), None)
        if source is None:
            return None
        if kind == "scale":
            return _Q(source.data, source.scale * scale_factor(node), source.zero_point)
        if kind == "maxpool2d":
            m = self.module(node)
            pad = F._pair(m.padding)  # type: ignore[attr-defined]
            data = source.data
            if any(pad):
                data = F.pad(data, (pad[1], pad[1], pad[0], pad[0]), value=-(2**62))  # padding never wins a max
            pooled = F.max_pool2d(data.double(), m.kernel_size, m.stride).to(torch.int64)
            return _Q(pooled, source.scale, source.zero_point)
        plain = [a.data if isinstance(a, _Q) else a for a in args]
        if node.op == "call_module":  # nn.Flatten / Dropout / Identity
            return _Q(self.module(node)(plain[0]), source.scale, source.zero_point)
        fn = node.target if node.op == "call_function" else getattr(plain[0], str(node.target))
        result = fn(*plain, **kwargs) if node.op == "call_function" else fn(*plain[1:], **kwargs)
        if isinstance(result, (tuple, list)):
            return [_Q(r, source.scale, source.zero_point) for r in result]
        return _Q(result, source.scale, source.zero_point)

    def quantizer_output(self, node: fx.Node, x_int: Tensor) -> _Q:
        quantizer: Quantizer = self.module(node)
        out = _Q(torch.empty(0), float(quantizer.get_scale().detach()), int(quantizer.get_zero_point().detach()))
        spec = quantizer.grid.spec
        source, clamps = node.args[0], []
        while isinstance(source, fx.Node) and source.meta.get("nnchip_kind") in CLAMP_KINDS:
            clamps.append(source)
            source = source.args[0]
        lo, hi = self.bounds(clamps, out, spec.qmin, spec.qmax)
        kind = source.meta.get("nnchip_kind")
        if kind == "input":
            out.data = x_int.to(torch.int64)
        elif kind == "constant":
            value: Any = self.gm
            for part in str(source.target).split("."):
                value = getattr(value, part)
            out.data = quantizer.int_values(value.detach()).to(torch.int64)
        elif isinstance(self.env.get(source), _Q):
            x = self.env[source]
            out.data = _requant_to(x.data, x.scale / out.scale, out, lo, hi, in_zp=x.zero_point)
        else:
            compute = self.op_elementwise if kind in ELEMENTWISE_KINDS else getattr(self, f"op_{kind}", None)
            if compute is None:
                raise UnsupportedError(f"deploy forward: op kind {kind!r} at {source.name} is not supported")
            out.data = compute(source, out, lo, hi)
        return out

    def bounds(self, clamps: list[fx.Node], out: _Q, lo: int, hi: int) -> tuple[int, int]:
        for clamp in clamps:
            kind = clamp.meta["nnchip_kind"]
            module = self.module(clamp) if clamp.op == "call_module" else None
            low, high = {"relu": (0.0, math.inf), "relu6": (0.0, 6.0)}.get(
                kind, (float(getattr(module, "min_val", -1.0)), float(getattr(module, "max_val", 1.0))))
            lo = max(lo, out.zero_point + round(low / out.scale))
            if math.isfinite(high):
                hi = min(hi, out.zero_point + round(high / out.scale))
        return lo, hi

    def arg(self, node: fx.Node, index: int = 0) -> _Q:
        return self.env[node.args[index]]

    # ---- compute ops -------------------------------------------------------------------------------
    def _layer(self, node: fx.Node, out: _Q, lo: int, hi: int, conv: bool) -> Tensor:
        layer = self.module(node)
        x = self.arg(node)
        quantizer: Quantizer = layer.weight_quantizer
        weight = quantizer.int_values(layer.weight.detach()).to(torch.float64)
        channels = weight.shape[0]
        acc_scale = x.scale * quantizer.get_scale().detach().double().reshape(-1).expand(channels)
        bias = torch.zeros(channels, dtype=torch.int64) if layer.bias is None else torch.round(
            layer.bias.detach().double() / acc_scale).to(torch.int64)
        centred = (x.data - x.zero_point).to(torch.float64)
        if conv:
            acc = F.conv2d(centred, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            acc = torch.round(acc).to(torch.int64) + _per_channel(bias, acc.dim(), 1)
            return _requant_to(acc, acc_scale / out.scale, out, lo, hi, axis=1)
        acc = torch.round(F.linear(centred, weight)).to(torch.int64) + bias
        return _requant_to(acc, acc_scale / out.scale, out, lo, hi, axis=acc.dim() - 1)

    def op_conv2d(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        return self._layer(node, out, lo, hi, conv=True)

    def op_linear(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        return self._layer(node, out, lo, hi, conv=False)

    def op_vq_lut(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        acc, real = deploy_lut(self.module(node), self.arg(node), self.input_grid(node))  # nnchip/vq/integer.py
        return _requant_to(acc, real / out.scale, out, lo, hi, axis=1 if acc.dim() == 4 else acc.dim() - 1)

    def input_grid(self, node: fx.Node) -> tuple[int, int]:
        """(qmin, qmax) of the quantizer whose integers reach `node`'s first input through layout ops."""
        source = node.args[0]
        while isinstance(source, fx.Node) and source.meta.get("nnchip_kind") != "quantize":
            source = next(a for a in source.args if isinstance(a, fx.Node))
        spec = self.module(source).grid.spec
        return spec.qmin, spec.qmax

    def op_add(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        a, b = self.arg(node, 0), self.arg(node, 1)
        (ma, na), (mb, nb) = quantize_multiplier(a.scale / out.scale), quantize_multiplier(b.scale / out.scale)
        frac = max(0, min(ADD_FRAC_BITS, na - 1, nb - 1))
        aligned_a = round_shift((a.data - a.zero_point) * ma, na - frac)
        total = aligned_a + round_shift((b.data - b.zero_point) * mb, nb - frac)
        return saturate(round_shift(total, frac) + out.zero_point, lo, hi)

    def _average(self, x: _Q, total: Tensor, count: int, out: _Q, lo: int, hi: int) -> Tensor:
        return _requant_to(total, x.scale / (count * out.scale), out, lo, hi)

    def op_adaptive_avgpool2d(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x = self.arg(node)
        size = self.module(node).output_size if node.op == "call_module" else node.args[1]
        size = (size, size) if isinstance(size, int) else tuple(size)
        h, w = x.data.shape[-2:]
        kernel = (h, w) if size in ((1, 1), (None, None)) else (h // size[0], w // size[1])
        total = F.avg_pool2d((x.data - x.zero_point).double(), kernel, kernel, divisor_override=1)
        return self._average(x, torch.round(total).to(torch.int64), kernel[0] * kernel[1], out, lo, hi)

    def op_avgpool2d(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x, m = self.arg(node), self.module(node)
        kernel = F._pair(m.kernel_size)  # type: ignore[attr-defined]
        total = F.avg_pool2d((x.data - x.zero_point).double(), kernel, m.stride or kernel, divisor_override=1)
        return self._average(x, torch.round(total).to(torch.int64), kernel[0] * kernel[1], out, lo, hi)

    def op_mean(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x = self.arg(node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims)
        keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
        total = (x.data - x.zero_point).sum(dim=dims, keepdim=keep)
        return self._average(x, total, int(math.prod(x.data.shape[d] for d in dims)), out, lo, hi)

    def op_cat(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        parts = [self.env[a] for a in node.args[0]]
        return torch.cat([_requant_to(p.data, p.scale / out.scale, out, lo, hi, in_zp=p.zero_point) for p in parts],
                         dim=dim)

    def op_matmul(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        a, b = self.arg(node, 0), self.arg(node, 1)
        acc = torch.round(torch.matmul(a.data.double(), b.data.double())).to(torch.int64)
        return _requant_to(acc, a.scale * b.scale / out.scale, out, lo, hi)

    def op_softmax(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x = self.arg(node)
        dim = getattr(self.module(node), "dim", -1) if node.op == "call_module" else node.kwargs.get(
            "dim", node.args[1] if len(node.args) > 1 else -1)
        bits = int(round(-math.log2(out.scale))) + 1
        if self.softmax_impl == "table":
            spec = self.source_quantizer(node.args[0]).grid.spec
            table = softmax_exp_table(x.scale, spec.qmax - spec.qmin)
            return table_softmax(x.data, table, out_bits=bits, dim=int(dim))
        return shiftmax(x.data, exp_shift_x0(x.scale), out_bits=bits, dim=int(dim))

    def source_quantizer(self, node: fx.Node) -> Quantizer:
        """The quantizer whose integers reach `node` through value-preserving ops."""
        while node.meta.get("nnchip_kind") != "quantize":
            node = next(a for a in node.args if isinstance(a, fx.Node))
        return self.module(node)

    def op_elementwise(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x, kind = self.arg(node), node.meta["nnchip_kind"]
        centred = x.data - x.zero_point
        if kind == "gelu" and self.gelu_impl == "shiftgelu":
            y = shift_gelu(centred, shift_gelu_x0(x.scale), out_bits=SHIFT_GELU_SIGMA_BITS)
            return _requant_to(y, x.scale * 2.0 ** (1 - SHIFT_GELU_SIGMA_BITS) / out.scale, out, lo, hi)
        function = elementwise_function(kind, self.module(node) if node.op == "call_module" else None)
        real = function(centred.double() * x.scale)  # the table entry for each input code
        return torch.clamp(torch.round(real / out.scale) + out.zero_point, lo, hi).to(torch.int64)

    def op_token_select(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x, probs = self.arg(node, 0), self.arg(node, 1)
        selected = token_select(x.data - x.zero_point, probs.data, int(self.module(node).keep))
        return _requant_to(selected, x.scale / out.scale, out, lo, hi)

    def op_layernorm(self, node: fx.Node, out: _Q, lo: int, hi: int) -> Tensor:
        x, m = self.arg(node), self.module(node)
        channels = x.data.shape[-1]
        unit = math.sqrt(channels) / 2**30
        gamma = m.weight.detach().double() if m.weight is not None else torch.ones(channels, dtype=torch.float64)
        beta = m.bias.detach().double() if m.bias is not None else torch.zeros(channels, dtype=torch.float64)
        gamma = torch.where(gamma.abs() < 1e-12, torch.full_like(gamma, 1e-12), gamma)
        z = int_layernorm_core(x.data, sqrt_mode=getattr(m, "sqrt_mode", "exact"))
        sign = torch.where(gamma < 0, -1, 1)
        z = sign * (z + torch.round(beta / (gamma * unit)).to(torch.int64))
        return _requant_to(z, gamma.abs() * unit / out.scale, out, lo, hi, axis=z.dim() - 1)


def deploy_lut(layer: LUTLayer, x: _Q, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """A LUT layer on integers: (accumulator (..., M) or (B, M, OH, OW), real scale s_T of one unit (M,))."""
    codebook = integer_codebooks(layer.codebooks, x.scale, x.zero_point, *grid)  # (C, K, v)
    tables, scales = integer_tables(layer.flat_weight(), layer.codebooks, layer.table_bits, layer.table_granularity)
    data = x.data
    if layer.is_conv:  # (B, OH, OW, D), padded with the zero point (real 0)
        data = im2col_rows(data.double(), layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                           x.zero_point).to(torch.int64)
    acc = gather_accumulate(encode_int(data, codebook, layer.metric), tables) + integer_bias(layer.bias, scales)
    return (acc.permute(0, 3, 1, 2) if layer.is_conv else acc), scales


def deploy_forward(qmodel: QModel, x_int: Tensor) -> dict[str, Tensor]:
    """Integer tensors of every quantizer node for the integer input `x_int` (see the module docstring)."""
    with torch.no_grad():
        return _Deployer(qmodel).run(x_int)


