"""Workload: the GEMMs a model asks of an accelerator, per sample (the hardware reference, §1.1).

One `LayerWork` per conv/linear/attention matmul: GEMM dimensions M (rows), K (reduction), N (columns) and
`count` independent GEMMs of that shape (conv groups, attention batch × heads), operand bit-widths, bytes moved,
and fields that pruning (`weight_density`) and vector quantization (`lut_reads`) fill in. It is built from
the integer graph (`workload_from_intgraph`) or, before any quantization, from a shape-level capture of a
float model (`workload_from_model`) — the two agree (tested), so a DeiT-B with random weights can be costed.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from nnchip.core.capture import capture
from nnchip.core.errors import ConfigError
from nnchip.lower.intgraph import IntGraph, IntNode

ROW_SCHEMES = ("fixed", "sp2")


@dataclass(frozen=True)
class RowGroup:
    """Output rows of a layer that share one weight format (row-wise mixed schemes, RMSMP/ILMPQ): `scheme`
    "fixed" (two's complement, multiplied on DSPs) or "sp2" (sum of two powers of two, shift-add on LUTs)."""

    scheme: str
    bits: int
    rows: int  # output rows (channels) of the whole layer in this format


@dataclass(frozen=True)
class LayerWork:
    name: str
    kind: str  # "conv2d", "linear", "matmul"
    m: int  # rows: output positions / tokens (per sample)
    k: int  # reduction length
    n: int  # columns: output channels / features
    count: int  # independent GEMMs of this shape (groups, heads)
    w_bits: int  # bits of the right operand (weights, or the second activation of a matmul)
    a_bits: int  # bits of the left operand (activations)
    weight_density: float = 1.0  # fraction of non-zero weights (pruning); zero-skipping hardware uses it
    lut_reads: int = 0  # table look-ups per sample (vector-quantized layers)
    row_groups: tuple[RowGroup, ...] = ()  # per-row weight formats (row-mixed layers), from the IntGraph node

    def __post_init__(self) -> None:
        for field_name in ("m", "k", "n", "count", "w_bits", "a_bits"):
            if getattr(self, field_name) <= 0:
                raise ConfigError(f"{self.name}: {field_name} must be positive, got {getattr(self, field_name)}")
        if not 0.0 < self.weight_density <= 1.0:
            raise ConfigError(f"{self.name}: weight_density must be in (0, 1], got {self.weight_density}")
        if self.row_groups and sum(g.rows for g in self.row_groups) != self.n * self.count:
            raise ConfigError(f"{self.name}: row_groups cover {sum(g.rows for g in self.row_groups)} rows, the layer "
                              f"has {self.n * self.count}")
        for group in self.row_groups:
            if group.scheme not in ROW_SCHEMES or group.bits < 1 or group.rows < 1:
                raise ConfigError(f"{self.name}: bad row group {group} (scheme one of {', '.join(ROW_SCHEMES)}, "
                                  "positive bits and rows)")

    @property
    def macs(self) -> int:
        return self.count * self.m * self.k * self.n

    @property
    def is_attention_matmul(self) -> bool:
        return self.kind == "matmul"

    @property
    def weight_bytes(self) -> float:
        """Bytes of the stationary operand (weights; for attention matmuls the second activation)."""
        return self.count * self.k * self.n * self.w_bits / 8

    @property
    def input_bytes(self) -> float:
        return self.count * self.m * self.k * self.a_bits / 8


@dataclass(frozen=True)
class Workload:
    layers: tuple[LayerWork, ...]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def bops(self) -> int:
        """Bit-operations: Σ MACs · b_w · b_a."""
        return sum(layer.macs * layer.w_bits * layer.a_bits for layer in self.layers)


def _conv_work(name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...], weight_shape: tuple[int, ...],
               groups: int, batch: int, w_bits: int, a_bits: int) -> LayerWork:
    out_channels, in_per_group, kh, kw = weight_shape
    m = (out_shape[0] // batch) * out_shape[2] * out_shape[3]
    return LayerWork(name, "conv2d", m, in_per_group * kh * kw, out_channels // groups, groups, w_bits, a_bits)


def _linear_work(name: str, in_shape: tuple[int, ...], out_features: int, batch: int, w_bits: int,
                 a_bits: int) -> LayerWork:
    rows = math.prod(in_shape[:-1]) // batch
    return LayerWork(name, "linear", rows, in_shape[-1], out_features, 1, w_bits, a_bits)


def _matmul_work(name: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], batch: int, w_bits: int,
                 a_bits: int) -> LayerWork:
    count = math.prod(a_shape[:-2]) // batch
    return LayerWork(name, "matmul", a_shape[-2], a_shape[-1], b_shape[-1], count, w_bits, a_bits)


def workload_from_model(model: nn.Module, example_inputs: torch.Tensor, *, w_bits: int = 8,
                        a_bits: int = 8) -> Workload:
    """Shape-level workload of a float model (no weights needed), per sample of `example_inputs`."""
    graph = capture(model, example_inputs).gm
    batch = example_inputs.shape[0]
    layers = []
    for node in graph.graph.nodes:
        kind = node.meta.get("nnchip_kind")
        if kind not in ("conv2d", "linear", "matmul"):
            continue
        shapes = [a.meta["nnchip_shape"] for a in node.args[:2] if isinstance(a, fx.Node)]
        if kind == "conv2d":
            conv = graph.get_submodule(str(node.target))
            layers.append(_conv_work(str(node.target), shapes[0], node.meta["nnchip_shape"], tuple(conv.weight.shape),
                                     conv.groups, batch, w_bits, a_bits))
        elif kind == "linear":
            linear = graph.get_submodule(str(node.target))
            layers.append(_linear_work(str(node.target), shapes[0], linear.out_features, batch, w_bits, a_bits))
        else:
            layers.append(_matmul_work(node.name, shapes[0], shapes[1], batch, a_bits, a_bits))
    return Workload(tuple(layers))


def workload_from_intgraph(graph: IntGraph) -> Workload:
    """The workload of a lowered integer model; bit-widths are the integer types of the operands."""
    batch = graph.tensors[graph.inputs[0]].shape[0]
    layers = []
    for node in graph.nodes:
        if node.op not in ("conv2d", "linear", "matmul"):
            continue
        source = str(node.attrs.get("source", node.name)).split(" ")[0]
        x = graph.tensors[node.inputs[0]]
        if node.op == "matmul":
            y = graph.tensors[node.inputs[1]]
            layers.append(_matmul_work(node.name, x.shape, y.shape, batch, y.spec.bits, x.spec.bits))
            continue
        weight = node.params["weight"]
        w_bits = int(node.attrs.get("weight_bits", 8))
        density = float((weight != 0).mean())
        if node.op == "conv2d":
            out_shape = graph.tensors[node.output].shape
            work = _conv_work(source, x.shape, out_shape, weight.shape, int(node.attrs["groups"]), batch, w_bits,
                              x.spec.bits)
        else:
            work = _linear_work(source, x.shape, weight.shape[0], batch, w_bits, x.spec.bits)
        layers.append(LayerWork(**{**work.__dict__, "weight_density": max(density, 1e-9),
                                   "row_groups": _row_groups(node)}))
    return Workload(tuple(layers))


def _row_groups(node: IntNode) -> tuple[RowGroup, ...]:
    """The row formats a row-mixed node declares (attrs `row_formats`) with their row counts (param
    `row_format`, one format index per output row); () for a layer with one format."""
    if "row_format" not in node.params:
        return ()
    counts = np.bincount(np.asarray(node.params["row_format"], dtype=np.int64).ravel(),
                         minlength=len(node.attrs["row_formats"]))
    return tuple(RowGroup(str(f["scheme"]), int(f["bits"]), int(c))
                 for f, c in zip(node.attrs["row_formats"], counts, strict=True) if c > 0)


def zoo_workload(name: str, image_size: int | None = None) -> Workload:
    """Shape-level workload of a zoo model at its default input size (batch 1, no weights needed)."""
    from nnchip.models import MODELS, build

    if name not in MODELS:
        build(name)  # raises the zoo's one-line error listing the known models
    defaults = {k: v.default for k, v in inspect.signature(MODELS[name]).parameters.items()
                if v.default is not inspect.Parameter.empty}
    size = image_size or int(defaults.get("image_size", 32))
    if size <= 0:
        raise ConfigError(f"image_size must be positive, got {size}")
    options = {"image_size": size} if "image_size" in defaults else {}
    shape = (1, int(defaults.get("in_channels", 3)), size, size)
    try:  # on the meta device only shapes are computed: a DeiT-B is costed in ~2 s with no weights in memory
        with torch.device("meta"):
            return workload_from_model(build(name, **options).eval(), torch.zeros(shape))
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: compute the shapes for real
        with torch.no_grad():
            return workload_from_model(build(name, **options).eval(), torch.zeros(shape))
