"""Integer-op ONNX export of an IntGraph, bit-exact with the interpreter in onnxruntime.

    model = to_onnx_integer(graph)           # onnx.ModelProto; input/outputs are int64 integer codes
    export(graph, DIR, formats=(..., "onnx"))   # writes DIR/model.onnx, listed in the manifest

Every IntGraph tensor is an int64 ONNX value and every op of docs/integer-semantics.md becomes integer ONNX
ops (the details and the exactness argument of each are in docs/export-format.md, "ONNX"):
  * conv2d / linear / matmul / avgpool: ConvInteger / MatMulInteger on uint8 operands with zero points (the
    input zero point is the op's zero point, so padding holds it; int8 codes and weights are shifted by 128,
    with zero point 128); operands wider than 8 bits are split into bytes (uint8 low bytes, a top byte
    shifted by 128) and the partial products are added in int64 with their 2^(8·(i+j)) weights.
  * requantization: int64 Mul by M0, then round_shift(v, n) as a uint64 BitShift of v + 2^63 + 2^(n−1)
    (wrap-around Cast/Add, so the shift floors any int64), minus 2^(63−n) and plus the zero point, Clip.
    Other floor divisions are Div(v − Mod(v, d), d) (Mod takes the divisor's sign, so the Div is exact).
  * softmax: the exp table as a Gather, ⌊2^52/Σe⌋ by Div, the rounding shift as above; Shiftmax: ReduceMax,
    arithmetic shifts, Max, Mod/Div by x0, the variable left shift as uint64 BitShift (ShiftGELU reuses it).
  * LayerNorm: ReduceSum, exact centring C·x − Σx (or I-ViT's floor-divided mean), an isqrt whose float64
    estimate is corrected to the exact floor(sqrt(v)) by integer comparisons (or I-ViT's 10 integer Newton
    steps), integer Div.
  * elementwise tables (GELU, SiLU, ...): Gather; maxpool: MaxPool on the 8-bit container (float for wider
    types; max is exact).
A node this module cannot express exactly is refused with an UnsupportedError naming the node and its op.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnchip.core.errors import UnsupportedError
from nnchip.export.onnx_graph import INT64, OnnxBuilder, TensorProto, check_supported, onnx
from nnchip.lower.intgraph import IntGraph, IntNode

INT31_MAX = 2**31 - 1


def _byte_count(low: int, high: int) -> int:
    """Bytes of a little-endian split of integers in [low, high]: uint8 low bytes and an int8 top byte."""
    count = 1
    while low // 256 ** (count - 1) < -128 or high // 256 ** (count - 1) > 127:
        count += 1
    return count


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Per-channel constants shaped to broadcast along `axis` of an `ndim` tensor; scalars stay scalars."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


class _IntegerExporter:
    def __init__(self, graph: IntGraph) -> None:
        self.graph = graph
        self.emitters: dict[str, Callable[[IntNode, list[str]], None]] = {
            "constant": self.constant, "identity": self.identity, "layout": self.layout, "requant": self.requant_op,
            "conv2d": self.conv2d, "linear": self.linear, "matmul": self.matmul, "add": self.add,
            "mean": self.mean, "avgpool": self.avgpool, "maxpool": self.maxpool, "concat": self.concat,
            "softmax": self.softmax, "lut": self.lut, "layernorm": self.layernorm, "shift_gelu": self.shift_gelu,
        }
        check_supported(graph, set(self.emitters) | {"layout"}, "exact ONNX integer")
        self.b = OnnxBuilder(graph)

    # ---- integer primitives ------------------------------------------------------------------------------
    def const(self, value: np.ndarray | int, hint: str) -> str:
        return self.b.const(value, hint)

    def floor_div(self, v: str, divisor: np.ndarray | int, hint: str) -> str:
        """floor(v / d), d != 0 constant: Mod takes the divisor's sign, so v − Mod(v, d) is a multiple of d."""
        d = self.const(divisor, hint)
        remainder = self.b.op("Mod", [v, d], hint, fmod=0)
        return self.b.op("Div", [self.b.op("Sub", [v, remainder], hint), d], hint)

    def round_shift(self, v: str, n: np.ndarray, rounding: str, hint: str, plus: int = 0) -> str:
        """round_shift(v, n) + plus per docs/integer-semantics.md §1 (HALF_UP), or asr(v, n) + plus (FLOOR).

        For n >= 1, in uint64 (wrap-around) arithmetic: u = uint64(v) + 2^63 + half is v + half + 2^63 with
        0 <= u < 2^64; BitShift(u, n) = floor((v + half)/2^n) + 2^(63−n) exactly; back in int64, subtract
        2^(63−n) − plus. (Mod/Div are the fallback when some shift is 0.)"""
        n = np.asarray(n, dtype=np.int64)
        half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0) if rounding == "half_up" else 0
        if not n.any():
            return self.b.op("Add", [v, self.const(plus, hint)], hint) if plus else v
        if not n.all():
            if rounding == "half_up":
                v = self.b.op("Add", [v, self.const(half, hint)], hint)
            v = self.floor_div(v, np.left_shift(np.int64(1), n), hint)
            return self.b.op("Add", [v, self.const(plus, hint)], hint) if plus else v
        offset = (np.uint64(1) << np.uint64(63)) + np.asarray(half, dtype=np.uint64)
        u = self.b.op("Add", [self.b.op("Cast", [v], hint, to=TensorProto.UINT64),
                              self.b.const(offset, hint, dtype=np.uint64)], hint)
        u = self.b.op("BitShift", [u, self.b.const(n, hint, dtype=np.uint64)], hint, direction="RIGHT")
        return self.b.op("Sub", [self.to_int64(u, hint), self.const(np.left_shift(np.int64(1), 63 - n) - plus, hint)],
                         hint)

    def requant(self, v: str, node: IntNode, m0: np.ndarray, n: np.ndarray, in_zp: int, out_zp: int,
                lo: int, hi: int, output: str, rounding: str | None = None) -> str:
        """sat(round_shift((v − in_zp)·M0, n) + out_zp, lo, hi); the node's rounding unless one is given."""
        rounding = rounding or str(node.attrs.get("rounding", "half_up"))
        if rounding not in ("half_up", "floor"):
            raise UnsupportedError(f"node {node.name} (op {node.op}): rounding {rounding!r} has no ONNX translation")
        hint = node.name
        if in_zp:
            v = self.b.op("Sub", [v, self.const(in_zp, hint)], hint)
        v = self.b.op("Mul", [v, self.const(m0, hint)], hint)
        v = self.round_shift(v, n, rounding, hint, plus=out_zp)
        return self.b.op("Clip", [v, self.const(lo, hint), self.const(hi, hint)], hint, output=output)

    def requant_node(self, node: IntNode, acc: str, axis: int, in_zp: int = 0) -> None:
        ndim = self.b.ndim(node.output)
        m0 = _broadcast(node.params["multiplier"], ndim, axis)
        n = _broadcast(node.params["shift"], ndim, axis)
        self.requant(acc, node, m0, n, in_zp, int(node.attrs["out_zero_point"]), int(node.attrs["lo"]),
                     int(node.attrs["hi"]), node.output)

    def fits_8_bits(self, tensor: str, zero_point: int) -> bool:
        """Every code of `tensor` and its zero point fit one 8-bit container (uint8, or int8 shifted by 128)."""
        spec = self.graph.tensors[tensor].spec
        low, high = (-128, 127) if spec.signed else (0, 255)
        return spec.bits <= 8 and low <= zero_point <= high

    def to_int64(self, v: str, hint: str) -> str:
        return self.b.op("Cast", [v], hint, to=INT64)

    def to_uint8(self, v: str, offset: int, hint: str) -> str:
        """uint8(v + offset); the caller guarantees 0 <= v + offset <= 255."""
        if offset:
            v = self.b.op("Add", [v, self.const(offset, hint)], hint)
        return self.b.op("Cast", [v], hint, to=TensorProto.UINT8)

    def activation_pieces(self, node: IntNode, index: int, value: str, zero_point: int) -> list[tuple[str, int, str]]:
        """uint8 operands with zero points whose sum Σ (piece − zp)·2^shift is the activation minus its zero
        point: [(uint8 value, shift, uint8 zero point)]. All operands are uint8 because onnxruntime's u8u8
        ConvInteger kernel is several times faster than its u8s8 one; int8 codes are shifted by 128."""
        tensor, h = node.inputs[index], node.name
        if self.fits_8_bits(tensor, zero_point):
            offset = 128 if self.graph.tensors[tensor].spec.signed else 0
            return [(self.to_uint8(value, offset, h), 0, self.b.const(zero_point + offset, h, dtype=np.uint8))]
        spec = self.graph.tensors[tensor].spec
        d = self.b.op("Sub", [value, self.const(zero_point, h)], h) if zero_point else value
        count = _byte_count(spec.qmin - zero_point, spec.qmax - zero_point)
        pieces = []
        for j in range(count):  # little-endian bytes of d: unsigned low bytes, a signed top byte
            piece = self.round_shift(d, np.array(8 * j), "floor", h)
            if j < count - 1:
                piece = self.b.op("Mod", [piece, self.const(256, h)], h, fmod=0)
            offset = 128 if j == count - 1 else 0
            pieces.append((self.to_uint8(piece, offset, h), 8 * j, self.b.const(offset, h, dtype=np.uint8)))
        return pieces

    def weight_pieces(self, w: np.ndarray, h: str) -> list[tuple[str, int, str]]:
        """Constant integer weights as uint8 pieces with zero points (one piece if they fit 8 bits)."""
        if w.min() >= 0 and w.max() <= 255:
            return [(self.b.const(w, h, dtype=np.uint8), 0, self.b.const(0, h, dtype=np.uint8))]
        count = _byte_count(int(w.min()), int(w.max()))
        pieces = []
        for j in range(count):
            piece = np.floor_divide(w, 256**j)
            piece, offset = (np.mod(piece, 256), 0) if j < count - 1 else (piece + 128, 128)
            pieces.append((self.b.const(piece, h, dtype=np.uint8), 8 * j, self.b.const(offset, h, dtype=np.uint8)))
        return pieces

    def integer_reduce(self, op_type: str, node: IntNode, a: list[tuple[str, int, str]],
                       b: list[tuple[str, int, str]], **attrs: object) -> str:
        """Σ over piece pairs of ConvInteger/MatMulInteger(a_i, b_j)·2^(shift_i + shift_j), in int64.
        Each partial reduction fits its int32 output: |piece − zp| <= 255 and the lowering's accumulator bound."""
        h, terms = node.name, []
        for a_value, a_shift, a_zp in a:
            for b_value, b_shift, b_zp in b:
                inputs = [a_value, b_value, a_zp, b_zp]  # optional zero points: "" is absent
                while not inputs[-1]:
                    inputs.pop()
                term = self.to_int64(self.b.op(op_type, inputs, h, **attrs), h)
                if a_shift + b_shift:
                    term = self.b.op("Mul", [term, self.const(1 << (a_shift + b_shift), h)], h)
                terms.append(term)
        total = terms[0]
        for term in terms[1:]:  # onnxruntime's Sum has no int64 kernel
            total = self.b.op("Add", [total, term], h)
        return total

    # ---- ops -----------------------------------------------------------------------------------------------
    def constant(self, node: IntNode, args: list[str]) -> None:
        self.b.op("Identity", [self.const(node.params["value"], node.name)], node.name, output=node.output)

    def identity(self, node: IntNode, args: list[str]) -> None:
        self.b.op("Identity", args, node.name, output=node.output)

    def layout(self, node: IntNode, args: list[str]) -> None:
        self.b.layout(node, args[0], node.output)

    def requant_op(self, node: IntNode, args: list[str]) -> None:
        self.requant_node(node, args[0], axis=1, in_zp=int(node.attrs["in_zero_point"]))

    def conv2d(self, node: IntNode, args: list[str]) -> None:
        a, w = node.attrs, node.params["weight"]
        ph, pw = a["padding"]
        x = self.activation_pieces(node, 0, args[0], int(a["in_zero_point"]))  # pads hold the zero point
        acc = self.integer_reduce("ConvInteger", node, x, self.weight_pieces(w, node.name), pads=[ph, pw, ph, pw],
                                  strides=list(a["stride"]), dilations=list(a["dilation"]), group=int(a["groups"]),
                                  kernel_shape=list(w.shape[2:]))
        acc = self.b.op("Add", [acc, self.const(_broadcast(node.params["bias"], 4, 1), node.name)], node.name)
        self.requant_node(node, acc, axis=1)

    def linear(self, node: IntNode, args: list[str]) -> None:
        x = self.activation_pieces(node, 0, args[0], int(node.attrs["in_zero_point"]))
        w_t = np.ascontiguousarray(node.params["weight"].T)  # (K, N)
        acc = self.integer_reduce("MatMulInteger", node, x, self.weight_pieces(w_t, node.name))
        acc = self.b.op("Add", [acc, self.const(node.params["bias"], node.name)], node.name)
        self.requant_node(node, acc, axis=self.b.ndim(node.output) - 1)

    def matmul(self, node: IntNode, args: list[str]) -> None:
        a = self.activation_pieces(node, 0, args[0], 0)
        b = self.activation_pieces(node, 1, args[1], 0)
        self.requant_node(node, self.integer_reduce("MatMulInteger", node, a, b), axis=1)

    def add(self, node: IntNode, args: list[str]) -> None:
        a, frac = node.attrs, int(node.attrs["frac_bits"])
        aligned = []
        for x, z, m, n in zip(args, a["zero_points"], node.params["multiplier"], node.params["shift"], strict=True):
            v = self.b.op("Sub", [x, self.const(int(z), node.name)], node.name) if z else x
            v = self.b.op("Mul", [v, self.const(int(m), node.name)], node.name)
            aligned.append(self.round_shift(v, np.array(int(n) - frac), "half_up", node.name))
        total = self.b.op("Add", aligned, node.name)
        self.requant(total, node, np.array(1), np.array(frac), 0, int(a["out_zero_point"]), int(a["lo"]),
                     int(a["hi"]), node.output, rounding="half_up")  # add and concat always round half up

    def mean(self, node: IntNode, args: list[str]) -> None:
        zp = int(node.attrs["in_zero_point"])
        x = self.b.op("Sub", [args[0], self.const(zp, node.name)], node.name) if zp else args[0]
        total = self.b.op("ReduceSum", [x, self.const(np.array(node.attrs["dims"]), node.name)], node.name,
                          keepdims=1)
        total = self.b.op("Reshape", [total, self.b.reshape_target(self.b.shapes[node.output], node)],  # type: ignore[arg-type]
                          node.name)
        self.requant_node(node, total, axis=1)

    def avgpool(self, node: IntNode, args: list[str]) -> None:
        """Window sums as a depthwise ConvInteger with a kernel of ones."""
        kernel = list(node.attrs["kernel"])
        channels = int(self.b.shapes[node.inputs[0]][1])  # type: ignore[arg-type]
        x = self.activation_pieces(node, 0, args[0], int(node.attrs["in_zero_point"]))
        ones = [(self.b.const(np.ones((channels, 1, *kernel)), node.name, dtype=np.uint8), 0, "")]
        total = self.integer_reduce("ConvInteger", node, x, ones, strides=list(node.attrs["stride"]), group=channels,
                                    kernel_shape=kernel)
        self.requant_node(node, total, axis=1)

    def maxpool(self, node: IntNode, args: list[str]) -> None:
        """MaxPool ignores padded positions; the contract pads with qmin, which never exceeds a real element."""
        spec = self.graph.tensors[node.inputs[0]].spec
        if spec.bits <= 8:
            x_type = TensorProto.INT8 if spec.signed else TensorProto.UINT8
        else:
            x_type = TensorProto.FLOAT if spec.bits <= 24 else TensorProto.DOUBLE
        ph, pw = node.attrs["padding"]
        x = self.b.op("Cast", [args[0]], node.name, to=x_type)
        pooled = self.b.op("MaxPool", [x], node.name, kernel_shape=list(node.attrs["kernel"]),
                           strides=list(node.attrs["stride"]), pads=[ph, pw, ph, pw])
        self.b.op("Cast", [pooled], node.name, output=node.output, to=INT64)

    def concat(self, node: IntNode, args: list[str]) -> None:
        a = node.attrs
        parts = [self.requant(x, node, np.array(int(m)), np.array(int(n)), int(z), int(a["out_zero_point"]),
                              int(a["lo"]), int(a["hi"]), self.b.fresh(node.name), rounding="half_up")
                 for x, z, m, n in zip(args, a["zero_points"], node.params["multiplier"], node.params["shift"],
                                       strict=True)]
        self.b.op("Concat", parts, node.name, output=node.output, axis=int(a["dim"]))

    def exp_shift(self, x: str, x0: int, n: int, h: str) -> str:
        """I-ViT's IntExpShift of x <= 0 (docs/integer-semantics.md, softmax "shiftmax")."""
        halved, sixteenth = (self.round_shift(x, np.array(k), "floor", h) for k in (1, 4))
        t = self.b.op("Sub", [self.b.op("Add", [x, halved], h), sixteenth], h)
        t = self.b.op("Max", [t, self.const(n * x0, h)], h)
        r = self.b.op("Mod", [t, self.const(x0, h)], h, fmod=0)  # t − x0·floor(t/x0), in (x0, 0]
        q = self.b.op("Div", [self.b.op("Sub", [t, r], h), self.const(x0, h)], h)  # exact: 0 <= q <= n
        base = self.b.op("Sub", [r, self.const(2 * x0, h)], h)  # > 0
        amount = self.b.op("Cast", [self.b.op("Sub", [self.const(n, h), q], h)], h, to=TensorProto.UINT64)
        shifted = self.b.op("BitShift", [self.b.op("Cast", [base], h, to=TensorProto.UINT64), amount], h,
                            direction="LEFT")
        one = self.b.const(np.uint64(1), h, dtype=np.uint64)
        return self.to_int64(self.b.op("BitShift", [shifted, one], h, direction="RIGHT"), h)  # asr of a positive

    def softmax(self, node: IntNode, args: list[str]) -> None:
        a, h = node.attrs, node.name
        out_bits = int(a["out_bits"])
        axes = self.const(np.array([int(a["dim"])]), h)
        row_max = self.b.op("ReduceMax", [args[0], axes], h, keepdims=1)
        if a["mode"] == "table":  # e = T[min(max − x, len − 1)], y = round(e·⌊2^52/Σe⌋ / 2^(52 − (b − 1)))
            table = node.params["table"]
            distance = self.b.op("Min", [self.b.op("Sub", [row_max, args[0]], h), self.const(table.size - 1, h)], h)
            e = self.b.op("Gather", [self.const(table, h), distance], h, axis=0)
            total = self.b.op("Max", [self.b.op("ReduceSum", [e, axes], h, keepdims=1), self.const(1, h)], h)
            factor = self.b.op("Div", [self.const(np.int64(2**52), h), total], h)  # positive operands: floor
            y = self.round_shift(self.b.op("Mul", [e, factor], h), np.array(52 - (out_bits - 1)), "half_up", h)
            self.b.op("Identity", [y], h, output=node.output)
            return
        x0, n = int(a["x0"]), int(a["n"])
        e = self.exp_shift(self.b.op("Sub", [args[0], row_max], h), x0, n, h)  # x − max <= 0
        total = self.b.op("Clip", [self.b.op("ReduceSum", [e, axes], h, keepdims=1), self.const(1, h),
                                   self.const(INT31_MAX, h)], h)
        factor = self.b.op("Div", [self.const(INT31_MAX, h), total], h)  # positive operands: Div is floor
        self.b.op("Div", [self.b.op("Mul", [e, factor], h), self.const(1 << (32 - out_bits), h)], h,
                  output=node.output)

    def shift_gelu(self, node: IntNode, args: list[str]) -> None:
        a, h = node.attrs, node.name
        x0, n, sigma_bits = int(a["x0"]), int(a["n"]), int(a["sigma_bits"])
        x = self.b.op("Sub", [args[0], self.const(int(a["in_zero_point"]), h)], h)
        last = self.const(np.array([-1]), h)
        x_max = self.b.op("Max", [self.b.op("ReduceMax", [x, last], h, keepdims=1), self.const(0, h)], h)
        e1 = self.exp_shift(self.b.op("Sub", [x, x_max], h), x0, n, h)
        e2 = self.exp_shift(self.b.op("Neg", [x_max], h), x0, n, h)
        total = self.b.op("Clip", [self.b.op("Add", [e1, e2], h), self.const(1, h), self.const(INT31_MAX, h)], h)
        factor = self.b.op("Div", [self.const(INT31_MAX, h), total], h)
        sigma = self.b.op("Div", [self.b.op("Mul", [e1, factor], h), self.const(1 << (32 - sigma_bits), h)], h)
        self.requant_node(node, self.b.op("Mul", [x, sigma], h), axis=self.b.ndim(node.output) - 1)

    def lut(self, node: IntNode, args: list[str]) -> None:
        index = self.b.op("Sub", [args[0], self.const(int(node.attrs["in_qmin"]), node.name)], node.name)
        self.b.op("Gather", [self.const(node.params["table"], node.name), index], node.name, output=node.output,
                  axis=0)

    def isqrt(self, var: str, h: str) -> str:
        """floor(sqrt(v)) exactly: a float64 estimate is within 1 of it for v < 2^62; one integer correction
        step in each direction (s² > v → s − 1; (s + 1)² <= v → s + 1) makes it exact."""
        estimate = self.b.op("Sqrt", [self.b.op("Cast", [var], h, to=TensorProto.DOUBLE)], h)
        s = self.to_int64(self.b.op("Floor", [estimate], h), h)
        too_big = self.to_int64(self.b.op("Greater", [self.b.op("Mul", [s, s], h), var], h), h)
        s = self.b.op("Sub", [s, too_big], h)
        s1 = self.b.op("Add", [s, self.const(1, h)], h)
        too_small = self.to_int64(self.b.op("LessOrEqual", [self.b.op("Mul", [s1, s1], h), var], h), h)
        return self.b.op("Add", [s, too_small], h)

    def layernorm(self, node: IntNode, args: list[str]) -> None:
        h, x = node.name, args[0]
        channels = int(self.b.shapes[node.inputs[0]][-1])  # type: ignore[arg-type]
        last = self.const(np.array([-1]), h)
        total = self.b.op("ReduceSum", [x, last], h, keepdims=1)
        if node.attrs["sqrt_mode"] == "ivit":  # rounded mean, as I-ViT
            twice = self.b.op("Add", [self.b.op("Mul", [total, self.const(2, h)], h), self.const(channels, h)], h)
            y = self.b.op("Sub", [x, self.floor_div(twice, 2 * channels, h)], h)
        else:  # exact centring: y = C·x − Σx
            y = self.b.op("Sub", [self.b.op("Mul", [x, self.const(channels, h)], h), total], h)
        var = self.b.op("ReduceSum", [self.b.op("Mul", [y, y], h), last], h, keepdims=1)
        if node.attrs["sqrt_mode"] == "ivit":
            std = self.const(np.array(2**16), h)
            for _ in range(10):  # positive operands: Div is floor division
                quotient = self.b.op("Div", [var, self.b.op("Max", [std, self.const(1, h)], h)], h)
                std = self.round_shift(self.b.op("Add", [std, quotient], h), np.array(1), "floor", h)
        else:
            std = self.isqrt(var, h)
        std = self.b.op("Max", [std, self.const(1, h)], h)
        factor = self.b.op("Div", [self.const(INT31_MAX, h), std], h)
        z = self.round_shift(self.b.op("Mul", [y, factor], h), np.array(1), "floor", h)
        sign = np.where(node.params["negate"].astype(bool), -1, 1).astype(np.int64)
        z = self.b.op("Add", [self.b.op("Mul", [z, self.const(sign, h)], h),
                              self.const(sign * node.params["beta"], h)], h)
        self.requant_node(node, z, axis=self.b.ndim(node.output) - 1)

    # ---- the model ---------------------------------------------------------------------------------------
    def build(self, outputs: list[str]) -> onnx.ModelProto:
        for node in self.graph.nodes:
            self.emitters[node.op](node, list(node.inputs))
        inputs = [self.b.value_info(name, INT64) for name in self.graph.inputs]
        return self.b.model(inputs, [self.b.value_info(name, INT64) for name in outputs],
                            "nnchip IntGraph, integer ONNX ops, bit-exact with the interpreter")


def to_onnx_integer(graph: IntGraph, outputs: list[str] | None = None) -> onnx.ModelProto:
    """The integer-op ONNX model of `graph`: int64 codes in, int64 codes out, bit-exact in onnxruntime.
    `outputs` names the IntGraph tensors to expose (default: the graph's outputs)."""
    exporter = _IntegerExporter(graph)
    return exporter.build(exporter.b.output_names(outputs))
