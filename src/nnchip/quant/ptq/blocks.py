"""Blocks for reconstruction, found from graph structure, and the walk that feeds them calibration data.

A *cut* is a quantizer node (or the graph input) after which no earlier value is still needed: the
dataflow passes through that one tensor. Consecutive cuts delimit blocks:
  * ResNets: the identity stays live across a residual block, so each block runs from one residual
    add's quantizer to the next (the stem and the head are blocks of their own);
  * pre-norm ViTs: the residual stream is live across the attention and the MLP sub-blocks, so each
    sub-block (LayerNorm → q/k/v → attention → projection → add) is one block;
  * plain chains (VGG-like): every layer is its own block, i.e. layer-wise reconstruction.
Blocks without a conv/linear layer are merged into the next one (the last into the previous). Values
computed only from constants (class token, position embedding, their quantizers) do not count as live
and are copied into every block that uses them.

`walk_blocks(qmodel, data)` yields, block by block, the block's quantized input (produced by the
already-processed quantized network), its float input and its float output (all (N, ...) tensors), so
the whole calibration set costs one forward pass of each network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from nnchip.core.errors import UnsupportedError
from nnchip.quant.base import Quantizer
from nnchip.quant.modules import Q_LAYER_TYPES, QConv2d, QLinear
from nnchip.quant.ptq.data import CalibrationData, quantization_disabled, run_in_chunks
from nnchip.quant.quantize import QModel


@dataclass
class Block:
    """A single-input, single-output subgraph of the QModel as its own GraphModule (modules are shared)."""

    module: fx.GraphModule
    layers: list[tuple[str, QConv2d | QLinear]]  # in execution order
    act_quantizers: list[tuple[str, Quantizer]]  # activation quantizers inside (incl. the output one)
    node_names: list[str] = field(default_factory=list)


@dataclass
class BlockData:
    """Calibration tensors at the boundary of one block (N samples each)."""

    x_q: Tensor  # input produced by the quantized network so far
    x_fp: Tensor  # input of the float network
    y_fp: Tensor  # float output of the block on x_fp (the reconstruction target)


def _constant_derived(graph: fx.Graph) -> set[fx.Node]:
    derived: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "get_attr" or (
            node.op in ("call_module", "call_function", "call_method") and node.all_input_nodes
            and all(a in derived for a in node.all_input_nodes)
        ):
            derived.add(node)
    return derived


def _cuts(graph: fx.Graph, gm: fx.GraphModule, derived: set[fx.Node]) -> list[int]:
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}
    cuts: list[int] = []
    live: set[fx.Node] = set()
    for i, node in enumerate(nodes):
        if node.op == "output":
            break
        if node not in derived:
            live.add(node)
        live = {n for n in live if last_use[n] > i}
        is_boundary = node.op == "placeholder" or (
            node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), Quantizer)
            and node not in derived
        )
        if is_boundary and live == {node}:
            cuts.append(i)
    return cuts


def partition_blocks(qmodel: QModel) -> list[Block]:
    """The QModel's blocks in execution order (see the module docstring for the rule)."""
    gm = qmodel.gm
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    output = nodes[-1]
    if len(placeholders) != 1 or not isinstance(output.args[0], fx.Node):
        raise UnsupportedError("block reconstruction needs a model with one tensor input and one tensor output")
    derived = _constant_derived(gm.graph)
    cuts = _cuts(gm.graph, gm, derived)
    bounds = [*cuts, nodes.index(output.args[0])]
    spans: list[tuple[int, int]] = []  # (input cut index, output node index)
    start = bounds[0]
    for end in bounds[1:]:
        if end <= start:
            continue
        if _has_layer(gm, nodes[start + 1:end + 1]):
            spans.append((start, end))
            start = end
    if start < bounds[-1]:  # trailing layer-less nodes join the last block
        if spans:
            spans[-1] = (spans[-1][0], bounds[-1])
        else:
            spans.append((start, bounds[-1]))
    return [_make_block(gm, nodes[s], nodes[s + 1:e + 1], nodes[e], derived) for s, e in spans]


def _has_layer(gm: fx.GraphModule, nodes: list[fx.Node]) -> bool:
    return any(n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), Q_LAYER_TYPES) for n in nodes)


def _make_block(gm: fx.GraphModule, input_node: fx.Node, body: list[fx.Node], output_node: fx.Node,
                derived: set[fx.Node]) -> Block:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {input_node: graph.placeholder("x")}
    inside = set(body)

    def copy(node: fx.Node) -> fx.Node:
        if node in env:
            return env[node]
        if node not in inside and node not in derived:
            raise UnsupportedError(f"block after {input_node.name} needs value {node.name} from outside the block")
        for arg in node.all_input_nodes:
            copy(arg)
        env[node] = graph.node_copy(node, lambda a: env[a])
        return env[node]

    for node in body:
        copy(node)
    graph.output(env[output_node])
    module = fx.GraphModule(gm, graph)
    layers, quantizers = [], []
    for node in body:
        if node.op != "call_module":
            continue
        sub = gm.get_submodule(str(node.target))
        if isinstance(sub, Q_LAYER_TYPES):
            layers.append((str(node.target), sub))
        elif isinstance(sub, Quantizer) and sub.role == "act":
            quantizers.append((str(node.target), sub))
    return Block(module, layers, quantizers, [n.name for n in body])


def walk_blocks(qmodel: QModel, data: CalibrationData) -> Iterator[tuple[Block, BlockData]]:
    """Yield (block, data) in order; after the caller returns, the quantized input of the next block is
    computed with the block as the caller left it."""
    chunk = data.eval_batch_size
    x_q = data.inputs
    x_fp = data.inputs
    for block in partition_blocks(qmodel):
        with quantization_disabled(qmodel):
            y_fp = run_in_chunks(block.module, x_fp, chunk)
        yield block, BlockData(x_q, x_fp, y_fp)
        x_q = run_in_chunks(block.module, x_q, chunk)
        x_fp = y_fp


class _Stop(Exception):
    pass


@torch.no_grad()
def layer_input(block: Block, layer: nn.Module, x: Tensor, chunk: int) -> Tensor:
    """The input `layer` receives when `block` runs on x (the forward stops at the layer)."""
    captured: list[Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        captured.append(inputs[0].detach())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        for part in x.split(chunk):
            try:
                block.module(part)
            except _Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(captured)


@torch.no_grad()
def layer_inputs(block: Block, x: Tensor, chunk: int) -> dict[str, Tensor]:
    """The inputs of every layer of `block` when it runs on x, by layer path."""
    captured: dict[str, list[Tensor]] = {path: [] for path, _ in block.layers}
    handles = [
        layer.register_forward_pre_hook(lambda _m, inputs, path=path: captured[path].append(inputs[0].detach()))
        for path, layer in block.layers
    ]
    try:
        for part in x.split(chunk):
            block.module(part)
    finally:
        for handle in handles:
            handle.remove()
    return {path: torch.cat(parts) for path, parts in captured.items()}
