"""`lower(qmodel) -> IntGraph`: fuse the fake-quant graph into integer nodes (docs/integer-semantics.md).

Every activation quantizer of the QModel defines one integer tensor. Walking back from a quantizer through
clamps (ReLU/ReLU6/Hardtanh) reaches the op that computes its values; that op becomes one integer node whose
requantization targets the quantizer's grid: conv/linear (+ folded BatchNorm) + clamp, residual add, pooling,
mean, concat, attention matmuls, softmax (exp table or Shiftmax), GELU (table), LayerNorm (integer, exact isqrt).
Layout ops (flatten, reshape, permute, ...) become layout nodes; positive `scale` nodes only change metadata.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from nnchip.core.capture import module_path_and_type
from nnchip.core.errors import ConversionError, UnsupportedError
from nnchip.core.int_nonlinear import SHIFT_GELU_SIGMA_BITS, exp_shift_x0, shift_gelu_x0, softmax_exp_table
from nnchip.core.intmath import quantize_multiplier, quantize_multipliers
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.core.op_kinds import CLAMP_KINDS, ELEMENTWISE_KINDS, LAYOUT_KINDS, elementwise_function, scale_factor
from nnchip.lower.intgraph import IntGraph, IntNode, IntTensor
from nnchip.lower.nested import nested_weight_params
from nnchip.lower.token_ops import emit_token_select
from nnchip.lower.vq_lut import emit_vq_lut
from nnchip.quant.base import Quantizer
from nnchip.quant.quantize import QModel

LUT_MAX_INPUT_BITS = 10
SOFTMAX_TABLE_MAX_ENTRIES = 4096


class _Lowerer:
    def __init__(self, qmodel: QModel, acc_bits: int, mult_bits: int, add_frac_bits: int) -> None:
        self.gm = qmodel.gm
        self.config = qmodel.config
        self.acc_bits, self.mult_bits, self.add_frac_bits = acc_bits, mult_bits, add_frac_bits
        self.tensors: dict[str, IntTensor] = {}
        self.nodes: list[IntNode] = []
        self.tensor_of: dict[fx.Node, str] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    # ---- helpers -----------------------------------------------------------------------------------
    def where(self, node: fx.Node) -> str:
        return module_path_and_type(self.gm, node)

    def module(self, node: fx.Node) -> Any:
        return self.gm.get_submodule(str(node.target))

    def add_tensor(self, name: str, node: fx.Node, spec: IntSpec, zero_point: int, scale: float) -> str:
        shape = tuple(node.meta.get("nnchip_shape") or ())
        self.tensors[name] = IntTensor(name, shape, spec, int(zero_point), float(scale))
        return name

    def input_tensor(self, arg: object, consumer: fx.Node) -> IntTensor:
        if not isinstance(arg, fx.Node) or arg not in self.tensor_of:
            raise ConversionError(f"{self.where(consumer)}: its input is not an integer tensor (kept in float?)")
        return self.tensors[self.tensor_of[arg]]

    def clamp_bounds(self, clamps: list[fx.Node], out: IntTensor) -> tuple[int, int]:
        lo, hi = out.spec.qmin, out.spec.qmax
        for clamp in clamps:
            kind = clamp.meta["nnchip_kind"]
            if kind == "relu":
                low_real, high_real = 0.0, math.inf
            elif kind == "relu6":
                low_real, high_real = 0.0, 6.0
            else:
                module = self.module(clamp) if clamp.op == "call_module" else None
                low_real = float(getattr(module, "min_val", -1.0))
                high_real = float(getattr(module, "max_val", 1.0))
            lo = max(lo, out.zero_point + round(low_real / out.scale))
            if math.isfinite(high_real):
                hi = min(hi, out.zero_point + round(high_real / out.scale))
        return lo, hi

    def requant_params(self, real: np.ndarray, where: str) -> dict[str, np.ndarray]:
        try:
            m0, n = quantize_multipliers(real, self.mult_bits)
        except ConversionError as exc:
            raise ConversionError(f"{where}: {exc}") from None
        return {"multiplier": m0.numpy(), "shift": n.numpy()}

    # ---- the walk -------------------------------------------------------------------------------------
    def run(self) -> IntGraph:
        for node in self.gm.graph.nodes:
            kind = node.meta.get("nnchip_kind")
            if kind == "quantize":
                self.lower_quantizer(node)
            elif kind in LAYOUT_KINDS or kind in ("maxpool2d", "scale"):
                if any(isinstance(a, fx.Node) and a in self.tensor_of for a in node.args):
                    self.lower_layout(node, kind)
            elif kind == "output":
                for arg in node.all_input_nodes:
                    self.outputs.append(self.input_tensor(arg, node).name)
        return IntGraph(self.tensors, self.nodes, self.inputs, self.outputs,
                        meta={"acc_bits": self.acc_bits, "mult_bits": self.mult_bits})

    def lower_quantizer(self, node: fx.Node) -> None:
        quantizer: Quantizer = self.module(node)
        if quantizer.get_scale().numel() != 1:
            raise UnsupportedError(f"{self.where(node)}: per-token activation scales are not lowered yet")
        grid = quantizer.grid
        if grid.values is not None:
            raise UnsupportedError(f"{self.where(node)}: activation value set of {quantizer.spec.quantizer!r} "
                                   "is not lowered yet; use a uniform activation quantizer")
        name = node.name
        out = IntTensor(name, tuple(node.meta.get("nnchip_shape") or ()), grid.spec,
                        int(quantizer.get_zero_point().detach()), float(quantizer.get_scale().detach()))
        self.tensors[name] = out
        self.tensor_of[node] = name
        source = node.args[0]
        clamps: list[fx.Node] = []
        while isinstance(source, fx.Node) and source.meta.get("nnchip_kind") in CLAMP_KINDS:
            clamps.append(source)
            source = source.args[0]
        assert isinstance(source, fx.Node)
        kind = source.meta.get("nnchip_kind")
        if kind == "input":
            self.inputs.append(name)
            return
        if kind == "constant":
            value: Any = self.gm
            for part in str(source.target).split("."):
                value = getattr(value, part)
            data = quantizer.int_values(value.detach()).to(torch.int64).numpy()
            self.nodes.append(IntNode(name, "constant", [], name, params={"value": data}))
            return
        lo, hi = self.clamp_bounds(clamps, out)
        if source in self.tensor_of:  # a quantized tensor re-quantized (e.g. through layout ops)
            self.emit_requant(name, self.tensors[self.tensor_of[source]], out, lo, hi, source)
            return
        emitter = self.emit_elementwise if kind in ELEMENTWISE_KINDS else getattr(self, f"emit_{kind}", None)
        if emitter is None:
            raise UnsupportedError(f"{self.where(source)}: op kind {kind!r} is not supported by the integer lowering")
        emitter(name, source, out, lo, hi)

    def emit_requant(self, name: str, x: IntTensor, out: IntTensor, lo: int, hi: int, source: fx.Node) -> None:
        params = self.requant_params(np.array([x.scale / out.scale]), self.where(source))
        self.nodes.append(IntNode(name, "requant", [x.name], name, params,
                                  {"in_zero_point": x.zero_point, "out_zero_point": out.zero_point, "lo": lo, "hi": hi,
                                   "rounding": "half_up", "source": self.where(source)}))

    def emit_conv2d(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        self._emit_gemm(name, node, out, lo, hi, "conv2d")

    def emit_linear(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        self._emit_gemm(name, node, out, lo, hi, "linear")

    def _emit_gemm(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int, op: str) -> None:
        layer = self.module(node)
        if not hasattr(layer, "weight_quantizer"):
            raise ConversionError(f"{self.where(node)}: the layer is not quantized (keep_float?)")
        x = self.input_tensor(node.args[0], node)
        wq: Quantizer = layer.weight_quantizer
        weight = wq.int_values(layer.weight.detach()).to(torch.int64)  # (C, ...)
        nested = nested_weight_params(layer, wq, self.where(node))  # every sparsity level (lower/nested.py)
        densest = torch.from_numpy(nested[0]["weight_nested"]) if nested else weight  # the bound holds at all levels
        channels = weight.shape[0]
        w_scale = wq.get_scale().detach().double().reshape(-1).expand(channels).clone()
        acc_scale = x.scale * w_scale  # (C,)
        bias_real = (layer.bias.detach().double() if layer.bias is not None
                     else torch.zeros(channels, dtype=torch.float64))
        bias = torch.round(bias_real / acc_scale).to(torch.int64)  # half-to-even, at the accumulator scale
        x_max = max(abs(x.spec.qmin - x.zero_point), abs(x.spec.qmax - x.zero_point))
        bound = x_max * densest.abs().reshape(channels, -1).sum(dim=1) + bias.abs()
        acc_bits = 1 + math.ceil(math.log2(int(bound.max()) + 1))
        if acc_bits > self.acc_bits:
            raise ConversionError(f"{self.where(node)}: accumulator needs {acc_bits} bits (weight-aware bound "
                                  f"{int(bound.max())}), more than the declared {self.acc_bits}")
        if acc_bits + self.mult_bits - 1 > 63:
            raise ConversionError(f"{self.where(node)}: {acc_bits}-bit accumulator × {self.mult_bits}-bit "
                                  "multiplier exceeds 63 bits")
        params = {"weight": weight.numpy(), "bias": bias.numpy(),
                  **self.requant_params((acc_scale / out.scale).numpy(), self.where(node))}
        attrs: dict[str, Any] = {"in_zero_point": x.zero_point, "out_zero_point": out.zero_point, "lo": lo, "hi": hi,
                                 "acc_bits": acc_bits, "declared_acc_bits": self.acc_bits, "rounding": "half_up",
                                 "weight_encoding": str(wq.grid.encoding), "weight_bits": wq.grid.storage_bits,
                                 "source": self.where(node)}
        if nested:
            params.update(nested[0])
            attrs.update(nested[1])
        if wq.grid.encoding == Encoding.ESB:
            attrs["weight_mantissa_bits"] = int(wq.mantissa_bits)
        if wq.grid.encoding == Encoding.ROW_MIXED:  # one format per output row: which one, and what they are
            params["row_format"] = wq.row_format.detach().to(torch.int64).numpy()
            attrs["row_formats"] = wq.format_descriptions()
        if op == "conv2d":
            attrs.update(stride=list(layer.stride), padding=list(layer.padding), dilation=list(layer.dilation),
                         groups=layer.groups, pad_value=x.zero_point)
            if layer.padding_mode != "zeros":
                raise UnsupportedError(f"{self.where(node)}: padding_mode {layer.padding_mode!r}")
        self.nodes.append(IntNode(name, op, [x.name], name, params, attrs))

    def emit_vq_lut(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        emit_vq_lut(self, name, node, out, lo, hi)  # two nodes: vq_encode -> lut_gemm (lower/vq_lut.py)

    def emit_token_select(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        emit_token_select(self, name, node, out, lo, hi)  # token pruning (lower/token_ops.py)

    def emit_add(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        a, b = (self.input_tensor(arg, node) for arg in node.args[:2])
        ma, na = quantize_multiplier(a.scale / out.scale, self.mult_bits)
        mb, nb = quantize_multiplier(b.scale / out.scale, self.mult_bits)
        frac = max(0, min(self.add_frac_bits, na - 1, nb - 1))
        params = {"multiplier": np.array([ma, mb], dtype=np.int64), "shift": np.array([na, nb], dtype=np.int64)}
        self.nodes.append(IntNode(name, "add", [a.name, b.name], name, params,
                                  {"zero_points": [a.zero_point, b.zero_point], "out_zero_point": out.zero_point,
                                   "frac_bits": frac, "lo": lo, "hi": hi, "rounding": "half_up",
                                   "source": self.where(node)}))

    def _emit_average(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int, dims: list[int],
                      kernel: list[int] | None, stride: list[int] | None) -> None:
        x = self.input_tensor(node.args[0], node)
        if kernel is None:
            count = int(np.prod([x.shape[d] for d in dims]))
        else:
            count = kernel[0] * kernel[1]
        params = self.requant_params(np.array([x.scale / (count * out.scale)]), self.where(node))
        attrs = {"in_zero_point": x.zero_point, "out_zero_point": out.zero_point, "lo": lo, "hi": hi,
                 "dims": dims, "kernel": kernel, "stride": stride, "count": count, "rounding": "half_up",
                 "source": self.where(node)}
        self.nodes.append(IntNode(name, "avgpool" if kernel else "mean", [x.name], name, params, attrs))

    def emit_adaptive_avgpool2d(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        x = self.input_tensor(node.args[0], node)
        size = self.module(node).output_size if node.op == "call_module" else node.args[1]
        size = (size, size) if isinstance(size, int) else tuple(size)
        h, w = x.shape[-2], x.shape[-1]
        if size in ((1, 1), (None, None)):
            self._emit_average(name, node, out, lo, hi, [2, 3], None, None)
        elif h % size[0] == 0 and w % size[1] == 0:
            kernel = [h // size[0], w // size[1]]
            self._emit_average(name, node, out, lo, hi, [2, 3], kernel, kernel)
        else:
            raise UnsupportedError(f"{self.where(node)}: adaptive pooling {size} of {h}×{w} has uneven windows")

    def emit_avgpool2d(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        module = self.module(node)
        kernel = list(F._pair(module.kernel_size))  # type: ignore[attr-defined]
        stride = list(F._pair(module.stride or module.kernel_size))  # type: ignore[attr-defined]
        if any(F._pair(module.padding)) or module.ceil_mode:  # type: ignore[attr-defined]
            raise UnsupportedError(f"{self.where(node)}: average pooling with padding or ceil_mode")
        self._emit_average(name, node, out, lo, hi, [2, 3], kernel, stride)

    def emit_mean(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        x = self.input_tensor(node.args[0], node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims)
        self._emit_average(name, node, out, lo, hi, [d % len(x.shape) for d in dims], None, None)

    def emit_cat(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        parts = [self.input_tensor(arg, node) for arg in node.args[0]]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        reals = np.array([p.scale / out.scale for p in parts])
        params = self.requant_params(reals, self.where(node))
        self.nodes.append(IntNode(name, "concat", [p.name for p in parts], name, params,
                                  {"dim": int(dim), "zero_points": [p.zero_point for p in parts],
                                   "out_zero_point": out.zero_point, "lo": lo, "hi": hi, "rounding": "half_up",
                                   "source": self.where(node)}))

    def emit_matmul(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        a, b = (self.input_tensor(arg, node) for arg in node.args[:2])
        if a.zero_point or b.zero_point:
            raise ConversionError(f"{self.where(node)}: matmul operands need zero point 0 (got {a.zero_point}, "
                                  f"{b.zero_point})")
        params = self.requant_params(np.array([a.scale * b.scale / out.scale]), self.where(node))
        reduction = a.shape[-1]
        bound = max(abs(a.spec.qmin), a.spec.qmax) * max(abs(b.spec.qmin), b.spec.qmax) * reduction
        acc_bits = 1 + math.ceil(math.log2(bound + 1))
        if acc_bits > self.acc_bits:
            raise ConversionError(f"{self.where(node)}: accumulator needs {acc_bits} bits, more than {self.acc_bits}")
        self.nodes.append(IntNode(name, "matmul", [a.name, b.name], name, params,
                                  {"out_zero_point": out.zero_point, "lo": lo, "hi": hi, "acc_bits": acc_bits,
                                   "rounding": "half_up", "source": self.where(node)}))

    def emit_softmax(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        x = self.input_tensor(node.args[0], node)
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else -1)
        if node.op == "call_module":
            dim = getattr(self.module(node), "dim", -1)
        out_bits = out.spec.bits
        if abs(out.scale - 2.0 ** (1 - out_bits)) > 1e-12 or out.zero_point != 0 or out.spec.signed:
            raise ConversionError(f"{self.where(node)}: softmax output must be unsigned, zero point 0, scale 2^-(b-1)")
        if 1.0 / x.scale >= 2**16:
            raise ConversionError(f"{self.where(node)}: softmax input scale {x.scale:.3g} too fine (1/S >= 2^16)")
        impl = self.config.softmax_impl
        attrs = {"dim": int(dim) if dim is not None else -1, "out_bits": out_bits, "mode": impl,
                 "source": self.where(node)}
        params: dict[str, np.ndarray] = {}
        if impl == "table":
            table = softmax_exp_table(x.scale, x.spec.qmax - x.spec.qmin)
            if table.numel() > SOFTMAX_TABLE_MAX_ENTRIES:
                raise ConversionError(f"{self.where(node)}: softmax exp table needs {table.numel()} entries (more than "
                                      f"{SOFTMAX_TABLE_MAX_ENTRIES}); quantize its input to fewer bits or use "
                                      "softmax_impl 'shiftmax'")
            params["table"] = table.numpy()
        else:
            attrs.update(x0=exp_shift_x0(x.scale), n=15)
        self.nodes.append(IntNode(name, "softmax", [x.name], name, params, attrs))

    def emit_elementwise(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        x = self.input_tensor(node.args[0], node)
        kind = node.meta["nnchip_kind"]
        if kind == "gelu" and self.config.gelu_impl == "shiftgelu":
            params = self.requant_params(np.array([x.scale * 2.0 ** (1 - SHIFT_GELU_SIGMA_BITS) / out.scale]),
                                         self.where(node))
            self.nodes.append(IntNode(name, "shift_gelu", [x.name], name, params,
                                      {"in_zero_point": x.zero_point, "x0": shift_gelu_x0(x.scale), "n": 23,
                                       "sigma_bits": SHIFT_GELU_SIGMA_BITS, "out_zero_point": out.zero_point,
                                       "lo": lo, "hi": hi, "rounding": "half_up", "source": self.where(node)}))
            return
        if x.spec.bits > LUT_MAX_INPUT_BITS:
            raise ConversionError(f"{self.where(node)}: the {kind} table needs an input of at most "
                                  f"{LUT_MAX_INPUT_BITS} bits")
        function = elementwise_function(kind, self.module(node) if node.op == "call_module" else None)
        codes = torch.arange(x.spec.qmin, x.spec.qmax + 1, dtype=torch.float64)
        real = function((codes - x.zero_point) * x.scale)
        table = torch.clamp(torch.round(real / out.scale) + out.zero_point, lo, hi).to(torch.int64)
        self.nodes.append(IntNode(name, "lut", [x.name], name, {"table": table.numpy()},
                                  {"in_qmin": x.spec.qmin, "function": kind, "source": self.where(node)}))

    def emit_layernorm(self, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
        x = self.input_tensor(node.args[0], node)
        module = self.module(node)
        channels = x.shape[-1]
        span = x.spec.qmax - x.spec.qmin
        if getattr(module, "sqrt_mode", "exact") == "exact" and channels**3 * span**2 >= 2**62:
            raise ConversionError(f"{self.where(node)}: integer LayerNorm over {channels} channels of "
                                  f"{x.spec.bits}-bit inputs: the sum of squares C^3·range^2 reaches 2^62; "
                                  "quantize its input to fewer bits")
        gamma = module.weight.detach().double() if module.weight is not None else torch.ones(channels).double()
        beta = module.bias.detach().double() if module.bias is not None else torch.zeros(channels).double()
        unit = math.sqrt(channels) / 2**30  # real value of one unit of the normalised integer z
        safe_gamma = torch.where(gamma.abs() < 1e-12, torch.full_like(gamma, 1e-12), gamma)
        beta_q = torch.round(beta / (safe_gamma * unit)).to(torch.int64)
        params = {"beta": beta_q.numpy(), "negate": (gamma < 0).to(torch.int64).numpy(),
                  **self.requant_params((safe_gamma.abs() * unit / out.scale).numpy(), self.where(node))}
        self.nodes.append(IntNode(name, "layernorm", [x.name], name, params,
                                  {"out_zero_point": out.zero_point, "lo": lo, "hi": hi, "sqrt_mode":
                                   getattr(module, "sqrt_mode", "exact"), "rounding": "half_up",
                                   "source": self.where(node)}))

    def lower_layout(self, node: fx.Node, kind: str) -> None:
        x = self.input_tensor(next(a for a in node.args if isinstance(a, fx.Node)), node)
        name = node.name
        scale = x.scale * (scale_factor(node) if kind == "scale" else 1.0)
        self.tensors[name] = IntTensor(name, tuple(node.meta.get("nnchip_shape") or ()), x.spec, x.zero_point, scale)
        self.tensor_of[node] = name
        if kind in ("scale", "identity", "contiguous"):
            self.nodes.append(IntNode(name, "identity", [x.name], name, {}, {"source": self.where(node)}))
            return
        if kind == "maxpool2d":
            module = self.module(node) if node.op == "call_module" else None
            if module is None:
                raise UnsupportedError(f"{self.where(node)}: functional max_pool2d")
            attrs = {"kernel": list(F._pair(module.kernel_size)), "stride": list(F._pair(module.stride)),  # type: ignore[attr-defined]
                     "padding": list(F._pair(module.padding)), "source": self.where(node)}  # type: ignore[attr-defined]
            if module.dilation not in (1, (1, 1)) or module.ceil_mode:
                raise UnsupportedError(f"{self.where(node)}: max pooling with dilation or ceil_mode")
            self.nodes.append(IntNode(name, "maxpool", [x.name], name, {}, attrs))
            return
        args = [_encode_arg(a, self.tensor_of) for a in node.args[1:]]
        kwargs = {k: _encode_arg(v, self.tensor_of) for k, v in node.kwargs.items()}
        self.nodes.append(IntNode(name, "layout", [x.name], name, {},
                                  {"fn": kind, "args": args, "kwargs": kwargs, "source": self.where(node)}))


SHAPE_ARITHMETIC = {operator.floordiv: operator.floordiv, operator.mul: operator.mul, operator.add: operator.add,
                    operator.sub: operator.sub}


def _shape_value(node: fx.Node) -> int | str:
    """A traced shape query as a constant: "batch" for dimension 0 of a tensor, else the size recorded at
    capture (the graph is specialised to every other dimension); integer arithmetic on constants is folded."""
    fail = UnsupportedError(f"layout argument {node.name} depends on data other than the batch size")
    if node.meta.get("nnchip_kind") != "meta":
        raise fail
    if node.target in SHAPE_ARITHMETIC:
        left, right = (_shape_value(a) if isinstance(a, fx.Node) else a for a in node.args)
        if not isinstance(left, int) or not isinstance(right, int):
            raise fail  # arithmetic with the symbolic batch size
        return SHAPE_ARITHMETIC[node.target](left, right)
    if node.target is operator.getitem and isinstance(source := node.args[0], fx.Node) and (
            (source.target is getattr and source.args[1] == "shape")
            or (source.op == "call_method" and source.target == "size" and len(source.args) == 1)):
        index = node.args[1]
    elif node.op == "call_method" and node.target == "size" and len(node.args) == 2:
        source, index = node, node.args[1]
    else:
        raise fail
    tensor = source.args[0]
    shape = tensor.meta.get("nnchip_shape") if isinstance(tensor, fx.Node) else None
    if not isinstance(index, int) or not shape:
        raise fail
    index = index % len(shape)
    return "batch" if index == 0 else int(shape[index])


def _encode_arg(value: object, tensor_of: dict[fx.Node, str]) -> object:
    """JSON-able layout arguments; a traced `x.shape[0]` becomes the string "batch", other traced sizes the
    constants they had at capture."""
    if isinstance(value, fx.Node):
        return _shape_value(value)
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop, value.step]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, (tuple, list)):
        return [_encode_arg(v, tensor_of) for v in value]
    if isinstance(value, torch.Size):
        return list(value)
    return value


def lower(qmodel: QModel, *, acc_bits: int = 32, mult_bits: int = 32, add_frac_bits: int = 16) -> IntGraph:
    """Lower a calibrated/trained QModel to an IntGraph (see the module docstring)."""
    if qmodel.config.keep_float:
        kept = ", ".join(qmodel.config.keep_float)
        raise ConversionError(f"layers kept in float cannot be lowered to integers: {kept}")
    if not 2 <= mult_bits <= 32:
        raise ConversionError(f"mult_bits must be in 2..32, got {mult_bits}")
    return _Lowerer(qmodel, acc_bits, mult_bits, add_frac_bits).run()
