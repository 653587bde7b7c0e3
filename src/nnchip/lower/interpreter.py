"""Run an IntGraph on integer tensors, exactly (docs/integer-semantics.md).

`run` executes the graph's plan (`nnchip.lower.plan`: int8/float32 reductions, float64 requantization and
tables wherever a static bound proves them exact). Each node's reference evaluation (`_run_node`, used by the
plan where no fast path is proven and by `run(..., fast=False)`) reduces in float32 when the lowering's
weight-aware bound proves every partial sum below 2^24, in float64 below 2^53, else in int64-added float64
chunks (`fast_paths`); everything else is int64 arithmetic on `nnchip.core` primitives. Where the static bound
does not prove the declared accumulator width, accumulators are checked at run time: `overflow="error"` raises,
`"report"` records them in the returned `overflows` list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nnchip.core import compiled
from nnchip.core.errors import ConversionError
from nnchip.core.int_nonlinear import int_layernorm_core, shift_gelu, shiftmax, table_softmax
from nnchip.core.intmath import Rounding, requantize
from nnchip.lower.fast_paths import Conv2dFn, exact_gemm, linear_fn, matmul_exact, requantize_inplace
from nnchip.lower.intgraph import IntGraph, IntNode
from nnchip.lower.plan import (
    Context,
    Step,
    apply_layout,
    as_int64,
    check_accumulator,
    ieee_float32,
    plan_for,
    reference_plan,
)
from nnchip.lower.token_ops import run_token_select
from nnchip.lower.vq_ops import lut_accumulate, run_vq_encode

torch.backends.cuda.matmul.allow_tf32 = False


class IntValues(Mapping[str, Tensor]):
    """Every tensor of a run by name, as int64 (converted from the interpreter's narrow storage on first access)."""

    def __init__(self, stored: dict[str, Tensor]) -> None:
        self._stored = stored
        self._int64: dict[str, Tensor] = {}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._int64:
            self._int64[name] = as_int64(self._stored[name])
        return self._int64[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


@dataclass
class RunResult:
    tensors: Mapping[str, Tensor]
    overflows: list[str] = field(default_factory=list)

    def outputs(self, graph: IntGraph) -> list[Tensor]:
        return [self.tensors[name] for name in graph.outputs]


def _channel_view(values: Tensor, ndim: int, axis: int = 1) -> Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def _exact_reduce(fn, *operands: Tensor, bound_bits: int) -> Tensor:  # type: ignore[no-untyped-def]
    """fn on float copies, exact: `bound_bits` (signed) <= 25 means |partial sums| < 2^24, exact in float32."""
    dtype = torch.float32 if bound_bits <= 25 else torch.float64
    return torch.round(fn(*(o.to(dtype) for o in operands))).to(torch.int64)


def _check_acc(node: IntNode, acc: Tensor, overflows: list[str], policy: str) -> None:
    check_accumulator(node, acc, Context(policy, overflows, 0))


def run(graph: IntGraph, inputs: Tensor | list[Tensor], *, overflow: str = "error", fast: bool = True,
        keep: str = "all") -> RunResult:
    """Evaluate every node; returns the integer tensors by name, as int64: with `keep="all"` (default) every tensor
    of the run (inputs included), with `keep="outputs"` only the graph's outputs — each intermediate tensor is then
    released after its last reader ran, so its memory is reused within the run (throughput: a run that keeps every
    tensor maps fresh pages for all of them).

    `fast` (default) runs the execution plan of `nnchip.lower.plan`: per node the fastest evaluation that a
    static bound proves exact, built on the first run and reused while the graph's nodes, attributes, tensor
    types and parameter arrays stay the same (replace a parameter array, rather than editing it in place, to
    change it). `fast=False` runs the plain integer reference evaluation of every node. Both give the same
    integers; accumulators that may leave their declared width are checked in both.
    """
    if overflow not in ("error", "report"):
        raise ConversionError(f"overflow must be 'error' or 'report', got {overflow!r}")
    if keep not in ("all", "outputs"):
        raise ConversionError(f"keep must be 'all' or 'outputs', got {keep!r}")
    compiled.refresh()
    plan = plan_for(graph, reference_step) if fast else reference_plan(graph, reference_step)
    feeds = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    values: dict[str, Tensor] = {}
    for name, value in zip(graph.inputs, feeds, strict=True):
        spec = graph.tensors[name].spec
        if value.is_floating_point():
            value = value.to(torch.int64)
        low, high = torch.aminmax(value)
        if int(low) < spec.qmin or int(high) > spec.qmax:
            raise ConversionError(f"input {name} holds values outside its {spec.bits}-bit type")
        values[name] = value.to(plan.storage[name])
    context = Context(overflow, [], feeds[0].shape[0])
    releases = plan.releases if keep == "outputs" else {}
    with ieee_float32():
        for index, (node, step) in enumerate(plan.steps):
            values[node.output] = step([values[i] for i in node.inputs], context)
            for name in releases.get(index, ()):
                del values[name]
    return RunResult(IntValues(values), context.overflows)


def reference_step(graph: IntGraph, node: IntNode) -> Step:
    """The plain integer evaluation of one node (int64 in, int64 out): the path when no fast path is proven."""

    def step(args: list[Tensor], context: Context) -> Tensor:
        return _run_node(graph, node, [as_int64(a) for a in args], context.overflows, context.policy,
                         batch=context.batch)

    return step


def _requant_node(node: IntNode, acc: Tensor, axis: int = 1, in_zp: int = 0, *, owned: bool = False) -> Tensor:
    """Requantize `acc`; with `owned` (a fresh buffer nobody else holds) HALF_UP runs in place."""
    multiplier = torch.from_numpy(node.params["multiplier"])
    shift = torch.from_numpy(node.params["shift"])
    if multiplier.numel() > 1:
        multiplier, shift = _channel_view(multiplier, acc.dim(), axis), _channel_view(shift, acc.dim(), axis)
    rounding = Rounding(node.attrs.get("rounding", "half_up"))
    if rounding is Rounding.HALF_UP and bool((shift >= 1).all()):
        if not owned or in_zp:
            acc = acc - in_zp if in_zp else acc.clone()  # one fresh buffer, then everything in place
        return requantize_inplace(acc, multiplier, shift, int(node.attrs["out_zero_point"]), int(node.attrs["lo"]),
                                  int(node.attrs["hi"]))
    return requantize(acc, multiplier, shift, in_zero_point=in_zp, out_zero_point=node.attrs["out_zero_point"],
                      lo=node.attrs["lo"], hi=node.attrs["hi"], rounding=rounding)


def _bound_unproven(node: IntNode) -> bool:
    """The static bound (acc_bits) does not prove the declared accumulator width: check at run time."""
    declared = int(node.attrs.get("declared_acc_bits", node.attrs.get("acc_bits", 32)))
    return int(node.attrs.get("acc_bits", declared)) > declared


def _run_node(graph: IntGraph, node: IntNode, args: list[Tensor], overflows: list[str], policy: str, *,
              batch: int) -> Tensor:
    op = node.op
    if op == "constant":
        return torch.from_numpy(node.params["value"]).to(torch.int64)
    if op in ("identity",):
        return args[0]
    if op == "layout":
        return apply_layout(node, args[0], batch)
    if op == "maxpool":
        x = args[0]
        pad = node.attrs["padding"]
        if any(pad):
            qmin = graph.tensors[node.inputs[0]].spec.qmin
            x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]), value=qmin)
        pooled = F.max_pool2d(x.to(torch.float64), node.attrs["kernel"], node.attrs["stride"])
        return pooled.to(torch.int64)
    if op == "requant":
        return _requant_node(node, args[0], in_zp=node.attrs["in_zero_point"])
    if op in ("conv2d", "linear"):
        zero_point = int(node.attrs["in_zero_point"])  # padding with the zero point == zero padding after − zp
        weight = torch.from_numpy(node.params["weight"])
        bias = torch.from_numpy(node.params["bias"])
        a = node.attrs
        fn = Conv2dFn(a["stride"], a["padding"], a["dilation"], a["groups"]) if op == "conv2d" else linear_fn
        acc = exact_gemm(fn, args[0], weight, bias, int(a["acc_bits"]), split_axis=1 if op == "conv2d" else -1,
                         zero_point=zero_point)
        if _bound_unproven(node):
            _check_acc(node, acc, overflows, policy)
        return _requant_node(node, acc, axis=1 if op == "conv2d" else acc.dim() - 1, owned=True)
    if op == "matmul":
        acc = matmul_exact(args[0], args[1], int(node.attrs["acc_bits"]))
        if _bound_unproven(node):
            _check_acc(node, acc, overflows, policy)
        return _requant_node(node, acc, owned=True)
    if op == "add":  # in place on fresh buffers: t = Σ round_shift((x − z)·M0, n − F); y = sat(round_shift(t, F) + zp)
        frac = int(node.attrs["frac_bits"])
        aligned = []
        for a, z, m0, n in zip(args, node.attrs["zero_points"], node.params["multiplier"].tolist(),
                               node.params["shift"].tolist(), strict=True):
            t = (a - z).mul_(m0) if z else a.mul(m0)
            if n - frac > 0:
                t.add_(1 << (n - frac - 1)).bitwise_right_shift_(n - frac)
            aligned.append(t)
        first, second = aligned
        total = first.add_(second) if first.shape == second.shape else first + second  # broadcasts allocate
        if frac > 0:
            total.add_(1 << (frac - 1)).bitwise_right_shift_(frac)
        return total.add_(int(node.attrs["out_zero_point"])).clamp_(int(node.attrs["lo"]), int(node.attrs["hi"]))
    if op in ("mean", "avgpool"):
        x = args[0] - node.attrs["in_zero_point"]
        if op == "mean":
            total = x.sum(dim=node.attrs["dims"], keepdim=True)
            target = graph.tensors[node.output].shape
            total = total.reshape((x.shape[0], *target[1:])) if target else total
        else:
            kernel = node.attrs["kernel"]
            total = _exact_reduce(lambda a: F.avg_pool2d(a, kernel, node.attrs["stride"], divisor_override=1), x,
                                  bound_bits=40)
        return _requant_node(node, total)
    if op == "concat":
        parts = []
        for index, (x, zp) in enumerate(zip(args, node.attrs["zero_points"], strict=True)):
            parts.append(requantize(x, int(node.params["multiplier"][index]), int(node.params["shift"][index]),
                                    in_zero_point=zp, out_zero_point=node.attrs["out_zero_point"],
                                    lo=node.attrs["lo"], hi=node.attrs["hi"]))
        return torch.cat(parts, dim=node.attrs["dim"])
    if op == "softmax" and node.attrs["mode"] == "table":
        return table_softmax(args[0], torch.from_numpy(node.params["table"]).to(torch.int64),
                             out_bits=int(node.attrs["out_bits"]), dim=int(node.attrs["dim"]))
    if op == "softmax":
        return shiftmax(args[0], int(node.attrs["x0"]), out_bits=int(node.attrs["out_bits"]), n=int(node.attrs["n"]),
                        dim=int(node.attrs["dim"]))
    if op == "shift_gelu":
        y = shift_gelu(args[0] - int(node.attrs["in_zero_point"]), int(node.attrs["x0"]),
                       out_bits=int(node.attrs["sigma_bits"]), n=int(node.attrs["n"]))
        return _requant_node(node, y, axis=y.dim() - 1)
    if op == "lut":
        table = torch.from_numpy(node.params["table"]).to(torch.int64)
        return table[args[0] - int(node.attrs["in_qmin"])]
    if op == "vq_encode":
        return run_vq_encode(node, args[0])
    if op == "lut_gemm":
        acc = lut_accumulate(node, args[0])
        _check_acc(node, acc, overflows, policy)
        return _requant_node(node, acc, axis=1 if node.attrs["layer"] == "conv2d" else acc.dim() - 1)
    if op == "token_select":
        return run_token_select(node, args[0], args[1])
    if op == "layernorm":
        z = int_layernorm_core(args[0], sqrt_mode=node.attrs["sqrt_mode"])
        negate = torch.from_numpy(node.params["negate"]).to(torch.bool)
        z = torch.where(negate, -z, z) + torch.from_numpy(node.params["beta"]) * torch.where(negate, -1, 1)
        return _requant_node(node, z, axis=z.dim() - 1)
    raise ConversionError(f"{node.name}: unknown op {op!r}")
