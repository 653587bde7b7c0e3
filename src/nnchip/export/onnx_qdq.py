"""QDQ ONNX export of an IntGraph: QuantizeLinear/DequantizeLinear around float ops, for ecosystem tools
(onnxruntime's QDQ fusions, TensorRT, vendor compilers) — approximate, its agreement is measured.

    model = to_onnx_qdq(graph)                    # float32 input (real values), int64 output codes
    stats = qdq_agreement(graph, x_int)           # equal fraction, max LSB difference, top-1 agreement
    export(graph, DIR, formats=(..., "onnx-qdq"))  # writes DIR/model_qdq.onnx, listed in the manifest

Every IntGraph tensor t is the float value DequantizeLinear(QuantizeLinear(y, S_t, zp_t)) on its grid
(8-bit containers for <= 8 bits, 16-bit for <= 16; a clamp narrower than the container is a float Clip
before QuantizeLinear). Weights are int8/int16 initializers with per-channel DequantizeLinear; their scale
is recovered from the integer multiplier (S_w = M0·2^−n·S_y/S_x) and biases are int32 at S_x·S_w. Ops run
in float: Conv, MatMul, Add, ReduceMean, AveragePool, MaxPool, Concat, Softmax, Gelu,
LayerNormalization. Where it cannot be exact (docs/export-format.md, "ONNX"): QuantizeLinear rounds half to
even on a float32 product, the contract rounds half up on an integer fixed-point product (rare 1-LSB
differences in every requantizing op); Softmax is exp, the contract is Shiftmax (shift-based exp
approximation); LayerNormalization divides by the float standard deviation, the contract by
floor(sqrt(Σ y²)) and a floored integer reciprocal. The real scales must be finite and positive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from nnchip.core.errors import ConfigError, UnsupportedError
from nnchip.export.onnx_graph import FLOAT, INT64, OnnxBuilder, TensorProto, check_supported, onnx
from nnchip.lower.intgraph import IntGraph, IntNode


def _container(bits: int, signed: bool) -> tuple[int, Any]:
    if bits <= 8:
        return (TensorProto.INT8, np.int8) if signed else (TensorProto.UINT8, np.uint8)
    if bits <= 16:
        return (TensorProto.INT16, np.int16) if signed else (TensorProto.UINT16, np.uint16)
    raise UnsupportedError(f"QDQ export: {bits}-bit tensors have no QuantizeLinear type")


def _weight_container(w: np.ndarray) -> Any:
    for dtype in (np.int8, np.int16, np.int32):
        if w.min() >= np.iinfo(dtype).min and w.max() <= np.iinfo(dtype).max:
            return dtype
    raise UnsupportedError("QDQ export: weights wider than 32 bits")


class _QdqExporter:
    def __init__(self, graph: IntGraph) -> None:
        for tensor in graph.tensors.values():
            if not (math.isfinite(tensor.scale) and tensor.scale > 0):
                raise ConfigError(f"QDQ export: tensor {tensor.name} has scale {tensor.scale!r}; QDQ needs finite "
                                  "positive real scales (the integer ONNX export does not)")
        self.graph = graph
        self.real: dict[str, str] = {}  # IntGraph tensor -> ONNX float value on its grid
        self.emitters: dict[str, Callable[[IntNode, list[str]], str]] = {
            "constant": self.constant, "identity": self.identity, "requant": self.requant, "conv2d": self.conv2d,
            "linear": self.linear, "matmul": self.matmul, "add": self.add, "mean": self.mean,
            "avgpool": self.avgpool, "maxpool": self.maxpool, "concat": self.concat, "softmax": self.softmax,
            "lut": self.lut, "layernorm": self.layernorm,
        }
        check_supported(graph, set(self.emitters) | {"layout"}, "QDQ")
        self.b = OnnxBuilder(graph)

    def scale(self, tensor: str) -> float:
        return self.graph.tensors[tensor].scale

    def fconst(self, value: np.ndarray | float, hint: str) -> str:
        return self.b.const(value, hint, dtype=np.float32)

    def quantize(self, y: str, tensor: str, hint: str, lo: int | None = None, hi: int | None = None,
                 clip: bool = True) -> str:
        """QuantizeLinear onto `tensor`'s grid (a float Clip first when [lo, hi] is narrower than the container;
        `clip=False` for values already on the grid)."""
        t = self.graph.tensors[tensor]
        _, dtype = _container(t.spec.bits, t.spec.signed)
        lo = t.spec.qmin if lo is None else max(lo, t.spec.qmin)
        hi = t.spec.qmax if hi is None else min(hi, t.spec.qmax)
        if clip and (lo, hi) != (np.iinfo(dtype).min, np.iinfo(dtype).max):
            y = self.b.op("Clip", [y, self.fconst(t.scale * (lo - t.zero_point), hint),
                                   self.fconst(t.scale * (hi - t.zero_point), hint)], hint)
        return self.b.op("QuantizeLinear", [y, self.fconst(t.scale, hint), self.b.const(t.zero_point, hint, dtype)],
                         hint)

    def dequantize(self, codes: str, tensor: str, hint: str) -> str:
        t = self.graph.tensors[tensor]
        _, dtype = _container(t.spec.bits, t.spec.signed)
        return self.b.op("DequantizeLinear", [codes, self.fconst(t.scale, hint),
                                              self.b.const(t.zero_point, hint, dtype)], hint)

    def requantize(self, node: IntNode, y: str) -> str:
        lo, hi = node.attrs.get("lo"), node.attrs.get("hi")
        return self.dequantize(self.quantize(y, node.output, node.name, lo, hi), node.output, node.name)

    def dq_param(self, values: np.ndarray, scales: np.ndarray, axis: int, hint: str, dtype: Any = None) -> str:
        dtype = dtype or _weight_container(values)
        return self.b.op("DequantizeLinear", [self.b.const(values, hint, dtype), self.fconst(scales, hint),
                                              self.b.const(np.zeros(scales.shape, dtype), hint, dtype)], hint,
                         axis=axis)

    def gemm_scales(self, node: IntNode) -> tuple[np.ndarray, np.ndarray]:
        """(weight scales per output channel, bias scales) recovered from the integer multipliers."""
        s_x, s_y = self.scale(node.inputs[0]), self.scale(node.output)
        real = node.params["multiplier"].astype(np.float64) * np.exp2(-node.params["shift"].astype(np.float64))
        channels = node.params["weight"].shape[0]
        s_w = np.broadcast_to(real * s_y / s_x, (channels,)).copy()
        return s_w, s_w * s_x

    # ---- ops -----------------------------------------------------------------------------------------------
    def constant(self, node: IntNode, args: list[str]) -> str:
        t = self.graph.tensors[node.output]
        _, dtype = _container(t.spec.bits, t.spec.signed)
        return self.dequantize(self.b.const(node.params["value"], node.name, dtype), node.output, node.name)

    def identity(self, node: IntNode, args: list[str]) -> str:
        """Same codes; a rescale only changes the grid's scale: re-read the codes on the output grid."""
        if self.scale(node.inputs[0]) == self.scale(node.output):
            return self.b.op("Identity", args, node.name)
        return self.dequantize(self.quantize(args[0], node.inputs[0], node.name, clip=False), node.output, node.name)

    def requant(self, node: IntNode, args: list[str]) -> str:
        return self.requantize(node, args[0])

    def conv2d(self, node: IntNode, args: list[str]) -> str:
        a, w = node.attrs, node.params["weight"]
        s_w, s_b = self.gemm_scales(node)
        ph, pw = a["padding"]
        y = self.b.op("Conv", [args[0], self.dq_param(w, s_w, 0, node.name),
                               self.dq_param(node.params["bias"], s_b, 0, node.name, np.int32)], node.name,
                      pads=[ph, pw, ph, pw], strides=list(a["stride"]), dilations=list(a["dilation"]),
                      group=int(a["groups"]), kernel_shape=list(w.shape[2:]))
        return self.requantize(node, y)

    def linear(self, node: IntNode, args: list[str]) -> str:
        s_w, s_b = self.gemm_scales(node)
        w_t = np.ascontiguousarray(node.params["weight"].T)  # (K, N)
        y = self.b.op("MatMul", [args[0], self.dq_param(w_t, s_w, 1, node.name)], node.name)
        y = self.b.op("Add", [y, self.dq_param(node.params["bias"], s_b, 0, node.name, np.int32)], node.name)
        return self.requantize(node, y)

    def matmul(self, node: IntNode, args: list[str]) -> str:
        return self.requantize(node, self.b.op("MatMul", args, node.name))

    def add(self, node: IntNode, args: list[str]) -> str:
        return self.requantize(node, self.b.op("Add", args, node.name))

    def mean(self, node: IntNode, args: list[str]) -> str:
        y = self.b.op("ReduceMean", [args[0], self.b.const(np.array(node.attrs["dims"]), node.name)], node.name,
                      keepdims=1)
        y = self.b.op("Reshape", [y, self.b.reshape_target(self.b.shapes[node.output], node)], node.name)  # type: ignore[arg-type]
        return self.requantize(node, y)

    def avgpool(self, node: IntNode, args: list[str]) -> str:
        y = self.b.op("AveragePool", args, node.name, kernel_shape=list(node.attrs["kernel"]),
                      strides=list(node.attrs["stride"]))
        return self.requantize(node, y)

    def maxpool(self, node: IntNode, args: list[str]) -> str:
        ph, pw = node.attrs["padding"]
        return self.b.op("MaxPool", args, node.name, kernel_shape=list(node.attrs["kernel"]),
                         strides=list(node.attrs["stride"]), pads=[ph, pw, ph, pw])

    def concat(self, node: IntNode, args: list[str]) -> str:
        return self.requantize(node, self.b.op("Concat", args, node.name, axis=int(node.attrs["dim"])))

    def softmax(self, node: IntNode, args: list[str]) -> str:
        return self.requantize(node, self.b.op("Softmax", args, node.name, axis=int(node.attrs["dim"])))

    def lut(self, node: IntNode, args: list[str]) -> str:
        if node.attrs.get("function") != "gelu":
            raise UnsupportedError(f"node {node.name} (op lut): table of {node.attrs.get('function')!r} has no "
                                   "float ONNX op")
        return self.requantize(node, self.b.op("Gelu", args, node.name))

    def layernorm(self, node: IntNode, args: list[str]) -> str:
        """γ_c = ±M_c·2^30·S_y/sqrt(C) and β_c = beta_c·γ_c·sqrt(C)/2^30, recovered from the integer node."""
        channels = int(self.b.shapes[node.inputs[0]][-1])  # type: ignore[arg-type]
        real = node.params["multiplier"].astype(np.float64) * np.exp2(-node.params["shift"].astype(np.float64))
        sign = np.where(node.params["negate"].astype(bool), -1.0, 1.0)
        gamma = np.broadcast_to(sign * real * 2.0**30 * self.scale(node.output) / math.sqrt(channels), (channels,))
        beta = node.params["beta"] * gamma * math.sqrt(channels) / 2.0**30
        epsilon = 0.25 * self.scale(node.inputs[0]) ** 2 / channels  # the contract's std >= 1 LSB, as a floor
        y = self.b.op("LayerNormalization", [args[0], self.fconst(gamma, node.name), self.fconst(beta, node.name)],
                      node.name, axis=-1, epsilon=epsilon)
        return self.requantize(node, y)

    # ---- the model ---------------------------------------------------------------------------------------
    def build(self, outputs: list[str]) -> onnx.ModelProto:
        for name in self.graph.inputs:
            self.real[name] = self.dequantize(self.quantize(name, name, name), name, name)
        for node in self.graph.nodes:
            args = [self.real.get(i, i) for i in node.inputs]
            if node.op == "layout":
                out = self.b.fresh(node.name)
                self.b.layout(node, args[0], out)
                if node.output not in self.b.lists:  # a Q/DQ pair after the layout op, as QDQ tools expect
                    codes = self.quantize(out, node.output, node.name, clip=False)
                    self.real[node.output] = self.dequantize(codes, node.output, node.name)
                continue
            self.real[node.output] = self.emitters[node.op](node, args)
        for name in outputs:
            self.b.op("Cast", [self.quantize(self.real[name], name, name)], name, output=name, to=INT64)
        inputs = [self.b.value_info(name, FLOAT) for name in self.graph.inputs]
        return self.b.model(inputs, [self.b.value_info(name, INT64) for name in outputs],
                            "nnchip IntGraph as QDQ (QuantizeLinear/DequantizeLinear around float ops); approximate")


def to_onnx_qdq(graph: IntGraph, outputs: list[str] | None = None) -> onnx.ModelProto:
    """The QDQ ONNX model of `graph`: float32 real input (scale·(q − zp)), int64 codes of `outputs` out."""
    exporter = _QdqExporter(graph)
    return exporter.build(exporter.b.output_names(outputs))


def real_input(graph: IntGraph, x_int: np.ndarray, name: str | None = None) -> np.ndarray:
    """The QDQ model's float input for integer codes: scale·(q − zero point)."""
    t = graph.tensors[name or graph.inputs[0]]
    return (t.scale * (np.asarray(x_int, dtype=np.float64) - t.zero_point)).astype(np.float32)


def qdq_agreement(graph: IntGraph, x_int: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Run the QDQ model in onnxruntime on `x_int` and compare its first output with `reference` (the
    interpreter's integer output): fraction of equal elements, max |difference| in LSB, top-1 agreement."""
    import onnxruntime as ort

    session = ort.InferenceSession(to_onnx_qdq(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {graph.inputs[0]: real_input(graph, x_int)})[0]
    reference = np.asarray(reference, dtype=np.int64)
    return {"equal_fraction": float((got == reference).mean()), "max_lsb": int(np.abs(got - reference).max()),
            "top1_agreement": float((got.argmax(-1) == reference.argmax(-1)).mean())}
