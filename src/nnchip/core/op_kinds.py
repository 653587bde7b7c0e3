"""Op kinds of captured graph nodes: one vocabulary, matched on module types and call targets.

Kinds used by every stage (quantize, prune, vq, lower, hw):
  compute:     conv2d, linear, matmul, add, mul, cat, mean, avgpool2d, adaptive_avgpool2d, batchnorm,
               layernorm, softmax, gelu, silu, hardswish, sigmoid, tanh
  clamps:      relu, relu6, hardtanh            (fuse into the producer's requantization)
  value-free:  maxpool2d, scale (multiply/divide by a positive Python number), and LAYOUT_KINDS
  graph:       input, output, constant (get_attr), meta (shape queries: x.shape, x.size(0), ...)
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.utils.parametrize import type_before_parametrizations

from nnchip.core.errors import UnsupportedError

LAYOUT_KINDS = frozenset(
    {"flatten", "reshape", "permute", "transpose", "unflatten", "squeeze", "unsqueeze", "expand", "getitem",
     "unbind", "chunk", "split", "contiguous", "identity"}
)
CLAMP_KINDS = frozenset({"relu", "relu6", "hardtanh"})
ELEMENTWISE_KINDS = frozenset({"gelu", "silu", "hardswish", "sigmoid", "tanh"})

MODULE_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Conv2d, "conv2d"),
    (nn.Linear, "linear"),
    (nn.BatchNorm2d, "batchnorm"),
    (nn.BatchNorm1d, "batchnorm"),
    (nn.LayerNorm, "layernorm"),
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu6"),
    (nn.Hardtanh, "hardtanh"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Hardswish, "hardswish"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.Softmax, "softmax"),
    (nn.MaxPool2d, "maxpool2d"),
    (nn.AvgPool2d, "avgpool2d"),
    (nn.AdaptiveAvgPool2d, "adaptive_avgpool2d"),
    (nn.Dropout, "identity"),
    (nn.Identity, "identity"),
    (nn.Flatten, "flatten"),
)

FUNCTION_KINDS: dict[object, str] = {
    torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "matmul",
    torch.softmax: "softmax", F.softmax: "softmax",
    F.gelu: "gelu", F.silu: "silu", F.hardswish: "hardswish", torch.sigmoid: "sigmoid", torch.tanh: "tanh",
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardtanh: "hardtanh",
    torch.flatten: "flatten", torch.reshape: "reshape", torch.permute: "permute", torch.transpose: "transpose",
    torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze", torch.unbind: "unbind", torch.chunk: "chunk",
    torch.split: "split", torch.cat: "cat", torch.concat: "cat", torch.mean: "mean",
    F.adaptive_avg_pool2d: "adaptive_avgpool2d", F.avg_pool2d: "avgpool2d", F.max_pool2d: "maxpool2d",
    F.dropout: "identity", operator.getitem: "getitem",
}

METHOD_KINDS: dict[str, str] = {
    "view": "reshape", "reshape": "reshape", "flatten": "flatten", "permute": "permute", "transpose": "transpose",
    "unflatten": "unflatten", "squeeze": "squeeze", "unsqueeze": "unsqueeze", "expand": "expand",
    "unbind": "unbind", "chunk": "chunk", "split": "split", "contiguous": "contiguous",
    "softmax": "softmax", "relu": "relu", "mean": "mean", "matmul": "matmul", "sigmoid": "sigmoid",
    "tanh": "tanh",
}

_ARITHMETIC = {operator.add: "add", torch.add: "add", "add": "add", operator.mul: "mul", torch.mul: "mul",
               "mul": "mul", operator.truediv: "div", torch.div: "div", "div": "div"}


def _is_tensor_arg(arg: object) -> bool:
    return isinstance(arg, fx.Node) and arg.meta.get("nnchip_shape") is not None


def classify_node(gm: fx.GraphModule, node: fx.Node) -> str:
    """The op kind of `node`; raises UnsupportedError naming its module path and type if unknown."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "get_attr":
        return "constant"
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        kind = getattr(module, "nnchip_kind", None)
        if kind is not None:
            return str(kind)
        base_type = type_before_parametrizations(module)  # a pruning mask keeps the layer's kind
        for module_type, module_kind in MODULE_KINDS:
            if base_type is module_type:
                return module_kind
        return _unsupported(gm, node)
    if node.meta.get("nnchip_shape") is None:  # a non-tensor result: shapes, sizes, tuples of tensors
        if node.target in (torch.unbind, torch.chunk, torch.split):
            return FUNCTION_KINDS[node.target]
        if node.op == "call_method" and node.target in ("unbind", "chunk", "split"):
            return METHOD_KINDS[str(node.target)]
        return "meta"
    arithmetic = _ARITHMETIC.get(node.target) if node.op in ("call_function", "call_method") else None  # type: ignore[arg-type]
    if arithmetic is not None:
        return _classify_arithmetic(gm, node, arithmetic)
    if node.op == "call_function" and node.target in FUNCTION_KINDS:
        return FUNCTION_KINDS[node.target]
    if node.op == "call_method" and node.target in METHOD_KINDS:
        return METHOD_KINDS[str(node.target)]
    return _unsupported(gm, node)


def _classify_arithmetic(gm: fx.GraphModule, node: fx.Node, op: str) -> str:
    left, right = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    tensors = [_is_tensor_arg(a) for a in (left, right)]
    if op == "add" and all(tensors) and "alpha" not in node.kwargs:
        return "add"
    if op == "mul" and all(tensors):
        return "mul"
    scalar = right if tensors[0] else left
    if op in ("mul", "div") and any(tensors) and isinstance(scalar, (int, float)) and scalar > 0:
        if op == "div" and not tensors[0]:
            return _unsupported(gm, node)
        return "scale"
    return _unsupported(gm, node)


def _unsupported(gm: fx.GraphModule, node: fx.Node) -> str:
    from nnchip.core.capture import module_path_and_type

    raise UnsupportedError(f"{module_path_and_type(gm, node)} is not supported by nnchip's graph capture")


def scale_factor(node: fx.Node) -> float:
    """The positive real factor of a `scale` node (x * c or x / c)."""
    left, right = node.args[0], node.args[1]
    factor = float(right if isinstance(left, fx.Node) else left)
    if node.target in (operator.truediv, torch.div, "div"):
        return 1.0 / factor
    return factor


def elementwise_function(node_kind: str, module: nn.Module | None = None) -> Callable[[Tensor], Tensor]:
    """The real function an elementwise node computes (its integer form is the table T[q] = f(S·(q − z)))."""
    if node_kind == "gelu":
        approximate = getattr(module, "approximate", "none") if module is not None else "none"
        return lambda x: F.gelu(x, approximate=approximate)
    return {"silu": F.silu, "hardswish": F.hardswish, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[node_kind]
