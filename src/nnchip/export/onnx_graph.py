"""Shared machinery of the two ONNX exports (onnx_integer.py, onnx_qdq.py): graph building, batch-aware
shapes and the layout ops of an IntGraph (reshape, flatten, transpose, expand, getitem, unbind, ...).

Imports `onnx` at module import: only the ONNX exporters import this module, so `import nnchip` never
needs onnx. Shapes: every IntGraph tensor's shape is evaluated at batch 1 and batch 2 (the interpreter on
an all-zero input); a dimension that doubles is `k·batch`, one that does not is static. The exported
models keep the batch dimension symbolic ("batch").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - exercised only without the optional extra
    from nnchip.core.errors import ConfigError

    raise ConfigError("ONNX export needs the 'onnx' package: pip install 'nnchip[onnx]'") from exc

from nnchip.core.errors import UnsupportedError
from nnchip.lower.interpreter import run
from nnchip.lower.intgraph import IntGraph, IntNode

OPSET = 21
IR_VERSION = 10
BatchDim = tuple[str, int] | int  # ("batch", k) = k·batch, or a static size
LAYOUT_FUNCTIONS = ("reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "permute", "expand",
                    "getitem", "unbind")


def check_supported(graph: IntGraph, ops: set[str], flavour: str) -> None:
    """Refuse, before any work, a node whose op (or layout function) has no translation."""
    for node in graph.nodes:
        if node.op not in ops:
            raise UnsupportedError(f"node {node.name} (op {node.op}): no {flavour} ONNX translation")
        if node.op == "layout" and node.attrs.get("fn") not in LAYOUT_FUNCTIONS:
            raise UnsupportedError(f"node {node.name} (op layout): function {node.attrs.get('fn')!r} has no ONNX "
                                   "translation")


def batch_shapes(graph: IntGraph) -> dict[str, list[BatchDim] | list[list[BatchDim]]]:
    """Every tensor's shape with batch-dependent dimensions marked (lists for `unbind` outputs)."""
    runs = []
    for batch in (1, 2):
        feeds = []
        for name in graph.inputs:
            spec, shape = graph.tensors[name].spec, graph.tensors[name].shape
            fill = min(max(0, spec.qmin), spec.qmax)
            feeds.append(torch.full((batch, *shape[1:]), fill, dtype=torch.int64))
        runs.append(run(graph, feeds, overflow="report").tensors)

    def mark(one: Any, two: Any, name: str) -> Any:
        if isinstance(one, (list, tuple)):
            return [mark(a, b, name) for a, b in zip(one, two, strict=True)]
        dims: list[BatchDim] = []
        for d1, d2 in zip(one.shape, two.shape, strict=True):
            if d1 == d2:
                dims.append(int(d1))
            elif d2 == 2 * d1:
                dims.append(("batch", int(d1)))
            else:
                raise UnsupportedError(f"tensor {name}: dimension {d1} at batch 1 is {d2} at batch 2")
        return dims

    return {name: mark(runs[0][name], runs[1][name], name) for name in runs[0]}


class OnnxBuilder:
    """Collects nodes and initializers; every helper returns the name of the value it produced."""

    def __init__(self, graph: IntGraph) -> None:
        self.graph = graph
        self.shapes = batch_shapes(graph)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.lists: dict[str, list[str]] = {}  # unbind outputs: IntGraph tensor -> ONNX value per element
        self._count = 0
        self._batch: str | None = None

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def const(self, value: np.ndarray | int | float, hint: str, dtype: Any = np.int64) -> str:
        name = self.fresh(f"{hint}_c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, *, output: str | None = None, **attrs: Any) -> str:
        return self.ops(op_type, inputs, hint, [output or self.fresh(hint)], **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], hint: str, outputs: list[str], **attrs: Any) -> list[str]:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh(f"{hint}_{op_type}"), **attrs))
        return outputs

    def batch(self) -> str:
        """The batch size as a 1-element int64 tensor, read from the first graph input."""
        if self._batch is None:
            self._batch = self.op("Shape", [self.graph.inputs[0]], "batch", start=0, end=1)
        return self._batch

    def shape_value(self, dims: list[BatchDim], hint: str) -> str:
        """An int64 shape tensor for `dims`: a constant, or a Concat with k·batch entries."""
        if all(isinstance(d, int) for d in dims):
            return self.const(np.array(dims, dtype=np.int64), hint)
        parts = []
        for d in dims:
            if isinstance(d, int):
                parts.append(self.const(np.array([d], dtype=np.int64), hint))
            else:
                parts.append(self.op("Mul", [self.batch(), self.const(np.array([d[1]]), hint)], hint))
        return self.op("Concat", parts, hint, axis=0)

    def reshape_target(self, dims: list[BatchDim], node: IntNode) -> str:
        batch_dims = [i for i, d in enumerate(dims) if not isinstance(d, int)]
        if len(batch_dims) > 1:
            raise UnsupportedError(f"node {node.name} (op layout): more than one batch-dependent dimension")
        return self.const(np.array([-1 if not isinstance(d, int) else d for d in dims], dtype=np.int64),
                          node.name)

    def ndim(self, tensor: str) -> int:
        return len(self.shapes[tensor])

    # ---- layout ops (type-agnostic: the same on int64 codes and on float values) -----------------------
    def layout(self, node: IntNode, x: str, output: str) -> None:
        """Emit `node` (op "layout") on ONNX value `x`; the result is named `output` (or a list for unbind)."""
        fn, args, kwargs = node.attrs["fn"], node.attrs["args"], node.attrs["kwargs"]
        source = node.inputs[0]
        if fn == "getitem" and source in self.lists:
            if len(args) != 1 or not isinstance(args[0], int):
                raise UnsupportedError(f"node {node.name} (op layout getitem): only an integer index into a list")
            self.op("Identity", [self.lists[source][args[0]]], node.name, output=output)
            return
        out_dims = self.shapes[node.output]
        if fn in ("reshape", "flatten", "unflatten", "squeeze", "unsqueeze"):
            self.op("Reshape", [x, self.reshape_target(out_dims, node)], node.name, output=output)  # type: ignore[arg-type]
        elif fn in ("transpose", "permute"):
            ndim = self.ndim(source)
            if fn == "transpose":
                a, b = (int(v) % ndim for v in args[:2])
                perm = list(range(ndim))
                perm[a], perm[b] = perm[b], perm[a]
            else:
                perm = [int(v) % ndim for v in (args[0] if len(args) == 1 and isinstance(args[0], list) else args)]
            self.op("Transpose", [x], node.name, output=output, perm=perm)
        elif fn == "expand":
            self.op("Expand", [x, self.shape_value(out_dims, node.name)], node.name, output=output)  # type: ignore[arg-type]
        elif fn == "getitem":
            self._getitem(node, x, output, args[0])
        elif fn == "unbind":
            dim = int(args[0] if args else kwargs.get("dim", 0)) % self.ndim(source)
            count = len(self.shapes[node.output])
            pieces = self.ops("Split", [x], node.name, [self.fresh(node.name) for _ in range(count)], axis=dim,
                              num_outputs=count)
            axes = self.const(np.array([dim]), node.name)
            self.lists[node.output] = [self.op("Squeeze", [p, axes], node.name) for p in pieces]
        else:
            raise UnsupportedError(f"node {node.name} (op layout): function {fn!r} has no ONNX translation")

    def _getitem(self, node: IntNode, x: str, output: str, index: Any) -> None:
        items = index if isinstance(index, list) else [index]
        ndim = self.ndim(node.inputs[0])
        if sum(1 for i in items if isinstance(i, dict) and i.get("ellipsis")) > 1 or None in items:
            raise UnsupportedError(f"node {node.name} (op layout getitem): index {index!r} is not supported")
        expanded: list[Any] = []
        for item in items:
            if isinstance(item, dict) and item.get("ellipsis"):
                expanded.extend([{"slice": [None, None, None]}] * (ndim - len(items) + 1))
            else:
                expanded.append(item)
        starts, ends, axes, steps, picks = [], [], [], [], []
        for axis, item in enumerate(expanded):
            if isinstance(item, dict) and "slice" in item:
                start, stop, step = item["slice"]
                if (start, stop, step) == (None, None, None):
                    continue
                step = 1 if step is None else int(step)
                starts.append(int(start) if start is not None else (0 if step > 0 else -1))
                ends.append(int(stop) if stop is not None else (2**62 if step > 0 else -(2**62)))
                axes.append(axis)
                steps.append(step)
            elif isinstance(item, int):
                picks.append((axis, item))
            else:
                raise UnsupportedError(f"node {node.name} (op layout getitem): index item {item!r} is not supported")
        value = x
        if axes:
            value = self.op("Slice", [value, self.const(np.array(starts), node.name),
                                      self.const(np.array(ends), node.name), self.const(np.array(axes), node.name),
                                      self.const(np.array(steps), node.name)], node.name)
        for axis, pick in sorted(picks, reverse=True):  # last axis first: earlier axes keep their numbers
            value = self.op("Gather", [value, self.const(np.array(pick), node.name)], node.name, axis=axis)
        self.op("Identity", [value], node.name, output=output)

    # ---- the model ---------------------------------------------------------------------------------------
    def output_names(self, requested: list[str] | None) -> list[str]:
        """The graph's outputs by default; requested names must be IntGraph tensors (lists excluded)."""
        if requested is None:
            return list(self.graph.outputs)
        for name in requested:
            if name not in self.shapes or (self.shapes[name] and isinstance(self.shapes[name][0], list)):
                raise UnsupportedError(f"output {name!r} is not a tensor of the IntGraph")
        return list(requested)

    def value_info(self, name: str, elem_type: int) -> onnx.ValueInfoProto:
        dims = self.shapes[name]
        return helper.make_tensor_value_info(name, elem_type, [d if isinstance(d, int) else "batch" for d in dims])

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
              doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "nnchip", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nnchip",
                                  doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


INT64 = TensorProto.INT64
FLOAT = TensorProto.FLOAT
