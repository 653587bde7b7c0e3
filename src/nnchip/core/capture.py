"""Graph capture: one torch.fx graph of a float model, shared by quantization, pruning, VQ and lowering.

`capture(model, example_inputs)` returns a `CapturedGraph` whose GraphModule
  * traces through every user-written module and stops at torch.nn leaf layers (by module type, never
    by name), so models nobody here wrote capture too;
  * has fused attention decomposed: nn.MultiheadAttention / nn.TransformerEncoder(Layer) modules are
    replaced by explicit equivalents (`decompose.py`), and F.scaled_dot_product_attention calls by
    matmul → scale → softmax → matmul nodes;
  * has in-place ops normalised (`out += identity` becomes an ordinary add);
  * labels each node with `node.meta["nnchip_kind"]` (see `op_kinds.py`) and its output shape
    `node.meta["nnchip_shape"]` (None for non-tensor values such as `x.shape[0]`).
The captured model computes exactly what the original computes (the input model is not modified).
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from nnchip.core.decompose import decompose_modules
from nnchip.core.errors import UnsupportedError
from nnchip.core.op_kinds import classify_node

CONTAINER_TYPES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _NnchipTracer(fx.Tracer):
    """Leaf = a torch.nn layer or a module that declares `nnchip_leaf = True`; user code is traced."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if getattr(type(m), "nnchip_leaf", False):
            return True
        if isinstance(m, CONTAINER_TYPES):
            return False
        return type(m).__module__.startswith("torch.nn")


@dataclass
class CapturedGraph:
    """A traced, normalised, shape-annotated GraphModule of a float model."""

    gm: fx.GraphModule
    example_inputs: tuple[Tensor, ...]

    def nodes_of_kind(self, *kinds: str) -> list[fx.Node]:
        return [n for n in self.gm.graph.nodes if n.meta.get("nnchip_kind") in kinds]


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace `model` with nnchip's leaf rule; errors name the module that failed."""
    tracer = _NnchipTracer()
    try:
        graph = tracer.trace(model)
    except UnsupportedError:
        raise
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...); keep one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(f"{type(model).__name__} cannot be captured: {message}") from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def capture(model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]) -> CapturedGraph:
    """Trace a copy of `model` into a normalised, decomposed, shape-annotated graph."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    work = copy.deepcopy(model).eval()
    for module in work.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    decompose_modules(work).eval()
    gm = trace(work)
    annotate_shapes(gm, inputs)
    _decompose_sdpa(gm)
    _normalise_inplace(gm)
    gm.graph.lint()
    gm.recompile()
    annotate_shapes(gm, inputs)
    for node in gm.graph.nodes:
        node.meta["nnchip_kind"] = classify_node(gm, node)
    return CapturedGraph(gm=gm, example_inputs=inputs)


def annotate_shapes(gm: fx.GraphModule, inputs: tuple[Tensor, ...]) -> None:
    """Run the graph once on `inputs`, storing each node's output shape (or None) in its meta."""

    class _ShapeRecorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> object:
            result = super().run_node(n)
            n.meta["nnchip_shape"] = tuple(result.shape) if isinstance(result, Tensor) else None
            return result

    with torch.no_grad():
        _ShapeRecorder(gm).run(*inputs)


def module_path_and_type(gm: fx.GraphModule, node: fx.Node) -> str:
    """'path (type)' of the module a node belongs to, for error messages."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return f"{node.target} ({type(module).__module__}.{type(module).__qualname__})"
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, owner = list(stack.values())[-1]
        owner_name = owner if isinstance(owner, str) else f"{owner.__module__}.{owner.__qualname__}"
        return f"{path or '<model>'} ({owner_name}), op {_target_name(node)}"
    return f"node {node.name}, op {_target_name(node)}"


def _target_name(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", str(target))


def _decompose_sdpa(gm: fx.GraphModule) -> None:
    """F.scaled_dot_product_attention(q, k, v) → softmax(q·kᵀ · scale) · v (no mask, no dropout)."""
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not F.scaled_dot_product_attention:
            continue
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        args = dict(zip(names, node.args, strict=False))
        args.update(node.kwargs)
        if args.get("attn_mask") is not None or args.get("is_causal") or args.get("dropout_p", 0.0) not in (0, 0.0):
            raise UnsupportedError(
                f"{module_path_and_type(gm, node)}: scaled_dot_product_attention with a mask, causal flag "
                "or dropout is unsupported"
            )
        if args.get("enable_gqa"):
            raise UnsupportedError(f"{module_path_and_type(gm, node)}: grouped-query attention is unsupported")
        q, k, v = args["query"], args["key"], args["value"]
        scale = args.get("scale")
        if scale is None:
            scale = 1.0 / math.sqrt(q.meta["nnchip_shape"][-1])
        with graph.inserting_before(node):
            key_t = graph.call_method("transpose", (k, -2, -1))
            scores = graph.call_function(torch.matmul, (q, key_t))
            scaled = graph.call_function(operator.mul, (scores, float(scale)))
            probs = graph.call_function(torch.softmax, (scaled,), {"dim": -1})
            out = graph.call_function(torch.matmul, (probs, v))
        for new in (key_t, scores, scaled, probs, out):
            new.meta["nn_module_stack"] = node.meta.get("nn_module_stack", {})
        node.replace_all_uses_with(out)
        graph.erase_node(node)


_INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.imul: operator.mul, operator.isub: operator.sub}
_INPLACE_METHODS = {"add_": "add", "mul_": "mul", "relu_": "relu", "sub_": "sub", "div_": "div"}


def _normalise_inplace(gm: fx.GraphModule) -> None:
    """In-place ops become their out-of-place forms; `inplace=True` keyword arguments are dropped."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
            node.target = _INPLACE_FUNCTIONS[node.target]
        elif node.op == "call_method" and node.target in _INPLACE_METHODS:
            node.target = _INPLACE_METHODS[node.target]
        if "inplace" in node.kwargs:
            node.kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
