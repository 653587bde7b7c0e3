"""Cost model of a LUT engine for vector-quantized layers, beside a MAC array (hardware reference §4, §10.2).

A LUT layer (per sample: N rows of width D = C·v, M outputs, K centroids per codebook, b_T-bit tables):
    distance element ops = N·C·K·v        L2: sub, multiply, add; L1: sub, abs, add; Chebyshev: sub, abs, max
    argmin compares      = N·C·(K − 1)    at the distance width
    lookup-adds          = N·C·M          at the accumulator width b_T + ceil(log2 C) + 1
    table storage        = C·K·M·b_T bits; index traffic = N·C·ceil(log2 K) bits
Engine (LUT-stationary, the analogue of weight-stationary): `distance_units` parallel distance units of v
elements (default K: one sub-vector encoded per cycle), a K-input argmin tree, and `lanes` lookup-accumulate
lanes reading a resident table slice (a codebook × an output tile); `engines` engines share the rows.
    cycles = ceil(N·C / engines) · max(ceil(K / distance_units), ceil(M / lanes))    (encoder ∥ accumulator)
Energy [MODEL on the 45 nm table]: E_add(b) = add_8bit · b/8, E_mult(b, b') = mult_8bit · b·b'/64; a local
table read costs `local_table_pj_per_bit` per bit (default: the 8 KB SRAM figure, 64-bit word / 64 — a
conservative choice: register- or latch-based tables cost less); every table bit, input and index is also
moved once through the 32 KB SRAM and tables and inputs once from DRAM, as `hw.energy` counts a MAC array.
Area [CHECK: the §4.1 area column, 45 nm]: adder 36 µm² per 8 bits, multiplier 282 µm² · b·b'/64; logic
only — storage is reported in KiB (the reference gives no SRAM area), for the LUT and the MAC design alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnchip.core.errors import ConfigError
from nnchip.hw.energy import EnergyReport, workload_energy
from nnchip.hw.specs import EnergySpec
from nnchip.hw.systolic import workload_cycles
from nnchip.hw.workload import LayerWork, Workload
from nnchip.lower.intgraph import IntGraph

ADD_8BIT_UM2 = 36.0
MULT_8BIT_UM2 = 282.0
METRIC_UNITS = ("l2", "l1", "chebyshev")


def add_area_um2(bits: int) -> float:
    return ADD_8BIT_UM2 * bits / 8


def mult_area_um2(bits_a: int, bits_b: int) -> float:
    return MULT_8BIT_UM2 * bits_a * bits_b / 64


@dataclass(frozen=True)
class LUTLayerWork:
    name: str
    rows: int  # N per sample: output positions (conv) or tokens
    d: int  # input width D = C·v
    m: int  # outputs M
    v: int
    k: int
    metric: str
    a_bits: int  # input / centroid bits
    table_bits: int

    def __post_init__(self) -> None:
        if self.metric not in METRIC_UNITS:
            raise ConfigError(f"{self.name}: metric must be one of {', '.join(METRIC_UNITS)}, got {self.metric!r}")
        if self.v < 1 or self.d % self.v:
            raise ConfigError(f"{self.name}: v = {self.v} does not divide the input width D = {self.d}")
        if self.k < 2:
            raise ConfigError(f"{self.name}: K must be >= 2, got {self.k}")

    @property
    def codebooks(self) -> int:
        return self.d // self.v

    @property
    def index_bits(self) -> int:
        return max(1, (self.k - 1).bit_length())

    @property
    def dist_bits(self) -> int:
        span = 2**self.a_bits
        bound = {"l2": self.v * span * span, "l1": self.v * span, "chebyshev": span}[self.metric]
        return bound.bit_length()

    @property
    def acc_bits(self) -> int:
        return self.table_bits + math.ceil(math.log2(self.codebooks)) + 1

    @property
    def distance_ops(self) -> int:
        return self.rows * self.codebooks * self.k * self.v

    @property
    def compares(self) -> int:
        return self.rows * self.codebooks * (self.k - 1)

    @property
    def lookups(self) -> int:
        return self.rows * self.codebooks * self.m

    @property
    def table_storage_bits(self) -> int:
        return self.codebooks * self.k * self.m * self.table_bits

    def as_gemm(self, w_bits: int = 8) -> LayerWork:
        """The same layer as the GEMM a MAC array computes."""
        return LayerWork(self.name, "linear", self.rows, self.d, self.m, 1, w_bits, self.a_bits)


@dataclass(frozen=True)
class LUTEngineSpec:
    engines: int = 4
    lanes: int = 16  # lookup-accumulate lanes per engine
    distance_units: int | None = None  # parallel v-wide distance units per engine; None: K
    local_table_pj_per_bit: float | None = None  # None: the 8 KB SRAM figure / 64

    def __post_init__(self) -> None:
        for name in ("engines", "lanes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LUTEngineSpec.{name} must be >= 1, got {getattr(self, name)}")


def distance_element_energy_pj(spec: EnergySpec, metric: str, a_bits: int, dist_bits: int) -> float:
    """One element of one distance: subtract, then square+add (L2), abs+add (L1) or abs+max (Chebyshev)."""
    diff_bits = a_bits + 1
    sub = spec.add_8bit_pj * diff_bits / 8
    if metric == "l2":
        return sub + spec.mult_8bit_pj * diff_bits * diff_bits / 64 + spec.add_8bit_pj * dist_bits / 8
    return sub + spec.add_8bit_pj * diff_bits / 8 + spec.add_8bit_pj * dist_bits / 8  # abs ≈ adder; add or max


def distance_element_area_um2(metric: str, a_bits: int, dist_bits: int) -> float:
    diff_bits = a_bits + 1
    if metric == "l2":
        return add_area_um2(diff_bits) + mult_area_um2(diff_bits, diff_bits) + add_area_um2(dist_bits)
    return 2 * add_area_um2(diff_bits) + add_area_um2(dist_bits)


def lut_cycles(work: LUTLayerWork, engine: LUTEngineSpec) -> int:
    units = engine.distance_units or work.k
    per_engine = -(-work.rows * work.codebooks // engine.engines)
    return per_engine * max(-(-work.k // units), -(-work.m // engine.lanes))


def lut_energy(layers: list[LUTLayerWork], engine: LUTEngineSpec, spec: EnergySpec, *, dram: bool = True
               ) -> EnergyReport:
    local = engine.local_table_pj_per_bit or spec.sram_64bit_8kb_pj / 64
    compute = sram = dram_pj = 0.0
    for w in layers:
        compute += w.distance_ops * distance_element_energy_pj(spec, w.metric, w.a_bits, w.dist_bits)
        compute += w.compares * spec.add_8bit_pj * w.dist_bits / 8
        compute += w.lookups * spec.add_8bit_pj * w.acc_bits / 8
        sram += w.lookups * w.table_bits * local
        moved = w.table_storage_bits + w.rows * w.d * w.a_bits + 2 * w.rows * w.codebooks * w.index_bits
        sram += moved / 64 * spec.sram_64bit_32kb_pj
        if dram:
            dram_pj += (w.table_storage_bits + w.rows * w.d * w.a_bits) * spec.dram_pj_per_bit
    return EnergyReport(compute, sram, dram_pj)


def lut_engine_area_um2(engine: LUTEngineSpec, layers: list[LUTLayerWork]) -> float:
    """Logic area of `engines` engines sized for the widest layer (distance units, argmin tree, lanes)."""
    w = max(layers, key=lambda layer: (layer.dist_bits, layer.acc_bits))
    units = engine.distance_units or w.k
    distance = units * w.v * distance_element_area_um2(w.metric, w.a_bits, w.dist_bits)
    argmin = (w.k - 1) * add_area_um2(w.dist_bits)
    lanes = engine.lanes * add_area_um2(w.acc_bits)
    return engine.engines * (distance + argmin + lanes)


@dataclass(frozen=True)
class DesignCost:
    cycles: int
    energy_pj: float  # with DRAM traffic (parameters and inputs loaded once per sample)
    energy_onchip_pj: float  # compute and SRAM only (parameters resident on chip)
    logic_area_um2: float
    storage_kib: float  # largest layer's resident parameters (tables or weights)


def lut_design_cost(layers: list[LUTLayerWork], engine: LUTEngineSpec, spec: EnergySpec) -> DesignCost:
    return DesignCost(sum(lut_cycles(w, engine) for w in layers), lut_energy(layers, engine, spec).total_pj,
                      lut_energy(layers, engine, spec, dram=False).total_pj, lut_engine_area_um2(engine, layers),
                      max(w.table_storage_bits for w in layers) / 8192)


def mac_design_cost(layers: list[LayerWork], rows: int, cols: int, spec: EnergySpec, *,
                    dataflow: str = "ws") -> DesignCost:
    """A rows × cols MAC array on the same layers (SCALE-Sim cycles, `hw.energy` energy, INT MAC area)."""
    workload = Workload(tuple(layers))
    cycles = int(np.asarray(workload_cycles(workload, rows, cols, dataflow)))
    w = layers[0]
    acc_bits = w.w_bits + w.a_bits + math.ceil(math.log2(max(layer.k for layer in layers)))
    area = rows * cols * (mult_area_um2(w.w_bits, w.a_bits) + add_area_um2(acc_bits))
    storage = max(layer.k * layer.n * layer.w_bits for layer in layers) / 8192
    return DesignCost(cycles, workload_energy(workload, spec).total_pj,
                      workload_energy(workload, spec, dram=False).total_pj, area, storage)


def lut_workload_from_intgraph(graph: IntGraph) -> list[LUTLayerWork]:
    """LUT layers of a lowered model: each vq_encode → lut_gemm pair, per sample."""
    batch = graph.tensors[graph.inputs[0]].shape[0]
    layers = []
    for node in graph.nodes:
        if node.op != "lut_gemm":
            continue
        encode = graph.producer(node.inputs[0])
        assert encode is not None and encode.op == "vq_encode"
        c, k, v = encode.params["codebook"].shape
        index = graph.tensors[encode.output]
        rows = math.prod(index.shape[:-1]) // batch
        x = graph.tensors[encode.inputs[0]]
        layers.append(LUTLayerWork(str(node.attrs.get("source", node.name)).split(" ")[0], rows, c * v,
                                   node.params["table"].shape[2], v, k, str(encode.attrs["metric"]), x.spec.bits,
                                   int(node.attrs["table_bits"])))
    return layers


def lut_workload_from_layers(layers: list[LayerWork], *, v: int, k: int, metric: str, table_bits: int
                             ) -> list[LUTLayerWork]:
    """Conv/linear GEMMs (shape level, e.g. from `workload_from_model`) as LUT layers of the given (v, K)."""
    for w in layers:
        if w.kind == "matmul" or w.count != 1:
            raise ConfigError(f"{w.name}: only ungrouped conv/linear layers become LUT layers (kind {w.kind}, "
                              f"count {w.count})")
    return [LUTLayerWork(w.name, w.m, w.k, w.n, v, k, metric, w.a_bits, table_bits) for w in layers]
