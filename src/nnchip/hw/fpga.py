"""FPGA tiled accelerator in the VAQF style: latency, resources and energy, vectorized over design points.

Two engines (hardware reference §9.4), run layer after layer:
  binary engine (LUTs)  T_m output lanes × T_n inputs of add/subtract trees for binary-weight GEMMs
                        cycles = count · M · ceil(K / T_n) · ceil(N / T_m)
  DSP engine            T_a × T_b DSPs, `pack` products per DSP when an operand is shared (2 × ≤8-bit,
                        4 × ≤4-bit on DSP48E2): attention matmuls (activation × activation), the first/last
                        layers (8-bit) and every weight layer when w_bits > 1
                        cycles = count · M · ceil(K / T_b) · ceil(N / (T_a · pack))
  memory (roofline)     bytes = inputs + weights (+ per-channel scales) + outputs, each moved once per layer
                        (the input of a layer stays in an on-chip buffer), over ddr_gbps · ddr_efficiency
  layer cycles          max(compute, memory) + pipeline_depth + first-tile load;  FPS = f_clk / Σ layers
  resources             LUT_L = base + scale · T_m · [(b_a + 1)(2 T_n − 1) + b_acc]   (FINN-style, §6.1)
                        LUT_A = T_a · pack · b_acc_A (the DSP cascade sums T_b products)   DSP = T_a · T_b
                        BRAM36 from buffer widths and capacities (§7); fixed nonlinear units and shell;
                        FF = ff_per_lut · LUT
  fit                   every resource ≤ utilisation_ceiling · device, T_n ≤ axi_ports · floor(axi_width / b_a)
Nonlinear units (softmax, GELU, LayerNorm) sit at the engine outputs and hide behind the GEMMs (assumption,
docs/hardware-models.md). A measured per-layer latency table replaces the model for the layers it names.
Shapes: design parameters are arrays (P,); per-layer quantities are (L, 1) × (P,) → (L, P).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nnchip.core.errors import ConfigError, DataError
from nnchip.core.intspec import sp2_fields
from nnchip.hw.mixed_lanes import row_mix_key, shift_add_engine_luts
from nnchip.hw.specs import SPEC_DIR, EnergySpec, FPGASpec
from nnchip.hw.workload import Workload

ROLE_WEIGHT, ROLE_ATTENTION, ROLE_FIRST_LAST = 0, 1, 2
SEARCH_KEYS = ("t_m", "t_n", "t_a", "t_b", "w_bits", "a_bits")


@dataclass(frozen=True)
class DesignConstants:
    """The accelerator's constants (values; their sources live beside them in the YAML file)."""

    name: str
    lut_adder_scale: float
    lut_engine_base: float
    utilisation_ceiling: float
    ddr_efficiency: float
    axi_ports: int
    axi_width_bits: int
    bram36_bits: int
    bram36_width_bits: int
    dsp_pack_le4: int
    dsp_pack_le8: int
    dsp48e1_pack_le4: int
    first_last_bits: int
    scale_bits: int
    pipeline_depth: int
    nonlinear_lut: int
    nonlinear_dsp: int
    nonlinear_bram36: int
    shell_lut: int
    shell_bram36: int
    ff_per_lut: float
    search: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def grid(self, key: str) -> np.ndarray:
        return np.asarray(dict(self.search)[key], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "search"}
        out["search"] = {k: list(v) for k, v in self.search}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesignConstants:
        search = tuple((k, tuple(v)) for k, v in dict(data.get("search", {})).items())
        return cls(**{**{k: v for k, v in data.items() if k != "search"}, "search": search})


def load_design(path: str | Path | None = None) -> DesignConstants:
    """The design file: every constant as {value, source}; a missing field or source is named with the file."""
    source = Path(path) if path else SPEC_DIR / "fpga_design.yaml"
    if not source.is_file():
        raise ConfigError(f"design file not found: {source}")
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("constants"), dict):
        raise ConfigError(f"{source}: needs a 'constants' mapping")
    values: dict[str, Any] = {"name": str(data.get("name", source.stem))}
    for f in fields(DesignConstants):
        if f.name in ("name", "search"):
            continue
        entry = data["constants"].get(f.name)
        if entry is None:
            raise ConfigError(f"{source}: constants is missing field {f.name!r}")
        if not isinstance(entry, dict) or "value" not in entry or not str(entry.get("source", "")).strip():
            raise ConfigError(f"{source}: constants.{f.name} needs a value and a source")
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{source}: constants.{f.name} must be a positive number, got {value!r}")
        values[f.name] = value
    unknown = set(data["constants"]) - {f.name for f in fields(DesignConstants)}
    if unknown:
        raise ConfigError(f"{source}: unknown constant(s) {', '.join(sorted(unknown))}")
    search = data.get("search") or {}
    grids = []
    for key in SEARCH_KEYS:
        if key not in search:
            raise ConfigError(f"{source}: search is missing field {key!r}")
        spec = search[key]
        if key in ("w_bits", "a_bits"):
            grid = tuple(int(v) for v in spec)
        else:
            if not (isinstance(spec, list) and len(spec) == 3):
                raise ConfigError(f"{source}: search.{key} must be [start, stop, step]")
            grid = tuple(range(int(spec[0]), int(spec[1]) + 1, int(spec[2])))
        if not grid or min(grid) <= 0:
            raise ConfigError(f"{source}: search.{key} must hold positive values, got {spec!r}")
        grids.append((key, grid))
    values["search"] = tuple(grids)
    return DesignConstants(**values)


# ---- workload → cost table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CostTable:
    """Unique GEMM shapes of a workload with their multiplicity; measured layers are a fixed time instead.

    m, k, n, count, role, mult: (L, 1) integer columns; role: weight layer / attention matmul / first-last.
    """

    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    count: np.ndarray
    role: np.ndarray
    mult: np.ndarray
    measured_seconds: float = 0.0
    measured_layers: tuple[str, ...] = ()
    row_mix: np.ndarray | None = None  # (L, 6) per GEMM: rows, bits of fixed format a; of b; of SP2 (0: unused)

    def row_mix_columns(self) -> tuple[np.ndarray, ...]:
        """(rows_a, bits_a, rows_b, bits_b, rows_sp2, bits_sp2), (L, 1) each; all 0 for one-format layers."""
        mix = self.row_mix if self.row_mix is not None else np.zeros((self.m.shape[0], 6), dtype=np.int64)
        return tuple(mix[:, i:i + 1] for i in range(6))


def cost_table(workload: Workload, measured: dict[str, float] | None = None) -> CostTable:
    """Group a workload's layers by (M, K, N, count, role); layers named in `measured` (seconds) leave the model."""
    measured = dict(measured or {})
    names = {layer.name for layer in workload.layers}
    unknown = sorted(set(measured) - names)
    if unknown:
        raise DataError(f"latency table names layer(s) not in the model: {', '.join(unknown[:5])}")
    weight_layers = [i for i, layer in enumerate(workload.layers) if layer.kind != "matmul"]
    first_last = {weight_layers[0], weight_layers[-1]} if weight_layers else set()
    groups: dict[tuple[int, ...], int] = {}
    for i, layer in enumerate(workload.layers):
        if layer.name in measured:
            continue
        role = ROLE_ATTENTION if layer.kind == "matmul" else ROLE_FIRST_LAST if i in first_last else ROLE_WEIGHT
        mix = row_mix_key(layer) if layer.row_groups else (0,) * 6
        role = ROLE_WEIGHT if layer.row_groups else role  # a row-mixed first/last layer keeps its own formats
        key = (layer.m, layer.k, layer.n, layer.count, role, *mix)
        groups[key] = groups.get(key, 0) + 1
    if not groups:
        raise ConfigError("the workload has no conv/linear/matmul layer left to cost")
    cols = np.array([(*key, mult) for key, mult in groups.items()], dtype=np.int64)  # (L, 12)
    m, k, n, count, role, mult = (cols[:, i:i + 1] for i in (0, 1, 2, 3, 4, 11))
    return CostTable(m, k, n, count, role, mult, float(sum(measured.values())), tuple(sorted(measured)),
                     cols[:, 5:11] if cols[:, 5:11].any() else None)


def load_latency_table(path: str | Path) -> dict[str, float]:
    """A measured per-layer latency CSV with columns `layer,latency_ms` → {layer: seconds}."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"latency table not found: {source}")
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"layer", "latency_ms"} <= set(rows[0]):
        raise DataError(f"{source}: needs a header 'layer,latency_ms' and at least one row")
    table = {}
    for line, row in enumerate(rows, start=2):
        try:
            value = float(row["latency_ms"])
        except (TypeError, ValueError):
            raise DataError(f"{source}:{line}: latency_ms {row['latency_ms']!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{source}:{line}: latency_ms must be a non-negative number, got {value}")
        table[str(row["layer"]).strip()] = value / 1e3
    return table


# ---- the cost function -------------------------------------------------------------------------------
RESOURCES = ("lut", "ff", "dsp", "bram36")


@dataclass(frozen=True)
class FPGACost:
    """Per design point (P,): latency, resources, energy, fit and what limits the design."""

    cycles: np.ndarray
    fps: np.ndarray
    lut: np.ndarray
    ff: np.ndarray
    dsp: np.ndarray
    bram36: np.ndarray
    energy_mj: np.ndarray  # per frame, 45 nm table (a relative proxy on an FPGA); depends on precision only
    memory_bound: np.ndarray  # fraction of the modelled cycles in memory-bound layers
    packing_ok: np.ndarray
    fits: np.ndarray
    resource_use: np.ndarray  # mean of LUT, FF, DSP, BRAM fractions of the device

    def utilisation(self, device: FPGASpec) -> dict[str, np.ndarray]:
        return {"lut": self.lut / device.lut, "ff": self.ff / device.ff, "dsp": self.dsp / device.dsp,
                "bram36": self.bram36 / device.bram36}


def _ceil_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-a // b)


def dsp_pack(bits: np.ndarray, device: FPGASpec, design: DesignConstants) -> np.ndarray:
    """Products per DSP for operands of `bits` (shared-operand packing, hardware reference §5)."""
    if device.dsp_type.upper().startswith("DSP48E1"):
        return np.where(bits <= 4, design.dsp48e1_pack_le4, 1)
    return np.where(bits <= 4, design.dsp_pack_le4, np.where(bits <= 8, design.dsp_pack_le8, 1))


def _check_positive(**arrays: np.ndarray) -> None:
    for name, value in arrays.items():
        if (value <= 0).any():
            raise ConfigError(f"{name} must be positive, got {int(value.min())}")


@dataclass(frozen=True)
class _Latency:
    """Per-layer quantities of the latency model, (L, P) each."""

    layer_cycles: np.ndarray  # max(compute, memory) + pipeline fill + first-tile load
    compute: np.ndarray
    memory: np.ndarray
    bits_moved: np.ndarray
    on_lut: np.ndarray
    wb: np.ndarray  # right-operand bits
    ab: np.ndarray  # left-operand bits


def _latency(table: CostTable, device: FPGASpec, design: DesignConstants, t_m: np.ndarray, t_n: np.ndarray,
             t_a: np.ndarray, t_b: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray) -> _Latency:
    """Cycles of every row of `table` at every design point; parameters (P,), or (L, 1)/(L, P) per layer."""
    fl = design.first_last_bits
    role = table.role  # (L, 1)
    on_lut = (role == ROLE_WEIGHT) & (w_bits == 1)  # (L, P)
    wb = np.where(role == ROLE_WEIGHT, w_bits, np.where(role == ROLE_ATTENTION, a_bits, fl))  # (L, P)
    ab = np.where(role == ROLE_FIRST_LAST, fl, a_bits)  # (L, P)
    pack = dsp_pack(np.maximum(wb, ab), device, design)  # (L, P)
    m, k, n, count = table.m, table.k, table.n, table.count
    lut_cycles = count * m * _ceil_div(k, t_n) * _ceil_div(n, t_m)
    dsp_cycles = count * m * _ceil_div(k, t_b) * _ceil_div(n, t_a * pack)
    compute = np.where(on_lut, lut_cycles, dsp_cycles)
    rows_a, bits_a, rows_b, bits_b, rows_sp2, bits_sp2 = table.row_mix_columns()
    mixed = (rows_a + rows_b + rows_sp2) > 0  # (L, 1): row-mixed layers, two lane groups in parallel
    if mixed.any():
        pack_a, pack_b = (dsp_pack(np.maximum(np.maximum(b, 1), ab), device, design) for b in (bits_a, bits_b))
        dsp_rows = _ceil_div(rows_a, t_a * pack_a) + _ceil_div(rows_b, t_a * pack_b)  # each format at its packing
        mixed_dsp = count * m * _ceil_div(k, t_b) * dsp_rows  # fixed-point rows: DSP lanes
        mixed_lut = count * m * _ceil_div(k, t_n) * _ceil_div(rows_sp2, t_m)  # SP2 rows: LUT shift-add lanes
        compute = np.where(mixed, np.maximum(mixed_dsp, mixed_lut), compute)
        on_lut = on_lut & ~mixed
        wb = np.where(mixed, (rows_a * bits_a + rows_b * bits_b + rows_sp2 * bits_sp2) / np.maximum(n, 1), wb)
    bytes_per_cycle = device.ddr_gbps * 1e9 * design.ddr_efficiency / (device.clock_mhz * 1e6)
    scales = np.where(on_lut, n * design.scale_bits, 0)
    bits_moved = count * (m * k * ab + k * n * wb + m * n * a_bits) + scales  # (L, P)
    memory = bits_moved / 8 / bytes_per_cycle
    first_tile = np.where(on_lut, t_n * ab + t_m * t_n, t_b * ab + t_a * pack * t_b * wb)
    layer_cycles = np.maximum(compute, memory) + design.pipeline_depth + first_tile / 8 / bytes_per_cycle
    return _Latency(layer_cycles, compute, memory, bits_moved, on_lut, wb, ab)


def weight_layer_cycles(workload: Workload, device: FPGASpec, design: DesignConstants, *, t_a: int, t_b: int,
                        w_bits: np.ndarray, a_bits: np.ndarray) -> np.ndarray:
    """Cycles (L, B) of each layer of `workload` on the DSP engine at each weight width w_bits (B,), ≥ 2, with
    its own input width a_bits (L,): the latency model of `fpga_cost` for a layer-wise mixed-precision design
    (every conv/linear on the DSP engine, no first/last override, one row per layer). Attention matmuls read
    both operands at their a_bits."""
    w_bits = np.atleast_1d(np.asarray(w_bits, dtype=np.int64))
    a_bits = np.asarray(a_bits, dtype=np.int64).reshape(-1, 1)
    _check_positive(t_a=np.asarray(t_a), t_b=np.asarray(t_b), a_bits=a_bits, w_bits=w_bits)
    if (w_bits < 2).any():
        raise ConfigError(f"w_bits must be at least 2 on the DSP engine, got {int(w_bits.min())}")
    cols = np.array([(layer.m, layer.k, layer.n, layer.count, ROLE_ATTENTION if layer.is_attention_matmul
                      else ROLE_WEIGHT, 1) for layer in workload.layers], dtype=np.int64).reshape(-1, 6)
    table = CostTable(*(cols[:, i:i + 1] for i in range(6)))
    one = np.ones(1, dtype=np.int64)
    return _latency(table, device, design, one, one, np.asarray(t_a), np.asarray(t_b), w_bits, a_bits).layer_cycles


def fpga_cost(table: CostTable, device: FPGASpec, design: DesignConstants, energy: EnergySpec,
              t_m: np.ndarray | int, t_n: np.ndarray | int, t_a: np.ndarray | int, t_b: np.ndarray | int,
              w_bits: np.ndarray | int, a_bits: np.ndarray | int) -> FPGACost:
    """Cost of every design point; all parameters broadcast to one shape (P,)."""
    t_m, t_n, t_a, t_b, w_bits, a_bits = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (t_m, t_n, t_a, t_b, w_bits, a_bits)))
    _check_positive(t_m=t_m, t_n=t_n, t_a=t_a, t_b=t_b, w_bits=w_bits, a_bits=a_bits)
    fl = design.first_last_bits
    role = table.role  # (L, 1)
    binary = w_bits == 1  # (P,)
    lat = _latency(table, device, design, t_m, t_n, t_a, t_b, w_bits, a_bits)
    on_lut, wb, ab, memory, bits_moved = lat.on_lut, lat.wb, lat.ab, lat.memory, lat.bits_moved
    m, k, n, count = table.m, table.k, table.n, table.count
    clock = device.clock_mhz * 1e6
    modelled = (table.mult * lat.layer_cycles).sum(axis=0)  # (P,)
    cycles = modelled + table.measured_seconds * clock
    fps = clock / cycles
    memory_bound = (table.mult * lat.layer_cycles * (memory > lat.compute)).sum(axis=0) / modelled

    # resources
    rows_a, bits_a, rows_b, bits_b, rows_sp2, bits_sp2 = table.row_mix_columns()
    mixed = (rows_a + rows_b + rows_sp2) > 0  # (L, 1)
    has_binary = binary & ((role == ROLE_WEIGHT) & ~mixed).any()
    k_lut = int(table.k[table.role == ROLE_WEIGHT].max(initial=1))
    acc_bits = a_bits + math.ceil(math.log2(max(2, k_lut))) + 1
    lut_binary = np.where(has_binary, design.lut_engine_base + design.lut_adder_scale * t_m * (
        (a_bits + 1) * (2 * t_n - 1) + acc_bits), 0.0)
    has_sp2 = bool((rows_sp2 > 0).any())  # SP2 rows: the LUT engine has shift-add lanes (sign lanes are a subset)
    sp2_bits = int(bits_sp2.max(initial=0))
    lut_engine = lut_binary
    if has_sp2:
        shifts = 2 ** sp2_fields(sp2_bits)[0]
        k_sp2 = int(table.k[rows_sp2 > 0].max())
        lut_engine = np.maximum(lut_binary, shift_add_engine_luts(
            t_m, t_n, a_bits, shifts, a_bits + shifts + math.ceil(math.log2(max(2, k_sp2))) + 1,
            base=design.lut_engine_base, scale=design.lut_adder_scale))
    on_dsp = ~on_lut
    dsp_wb = np.where(mixed, np.maximum(bits_a, bits_b), wb)  # a row-mixed layer's widest fixed-point rows
    dsp_bits = np.where(on_dsp, np.maximum(dsp_wb, ab), 0).max(axis=0)  # widest operand on the DSP engine (P,)
    dsp_pack_max = dsp_pack(np.maximum(dsp_bits, 1), device, design)
    k_dsp = np.where(on_dsp, k, 1).max(axis=0)
    acc_dsp = 2 * dsp_bits + np.ceil(np.log2(np.maximum(2, k_dsp)))
    lut_dsp = t_a * dsp_pack_max * acc_dsp  # products accumulate in the DSP cascade; one extraction per column
    lut = lut_engine + lut_dsp + design.nonlinear_lut + design.shell_lut
    dsp = t_a * t_b + design.nonlinear_dsp  # the DSP lanes serve the fixed-point rows of row-mixed layers too
    width = design.bram36_width_bits
    has_lut = has_binary | has_sp2
    in_capacity = (count * m * k * ab).max(axis=0)  # the largest layer input stays on chip (P,)
    in_width = np.maximum(np.where(has_lut, t_n * a_bits, 0), t_b * fl)
    in_banks = _ceil_div(in_width, width)
    bram_in = in_banks * _ceil_div(in_capacity, in_banks * design.bram36_bits)
    # second operands on the DSP engine: first/last weights (8 bits), attention activations, weights if w_bits > 1
    w_bits_dsp = np.maximum(np.maximum(np.where(binary, fl, np.maximum(w_bits, fl)), a_bits),
                            int(np.maximum(bits_a, bits_b).max(initial=0)))
    w_tile = np.maximum(np.where(has_lut, t_m * t_n * max(1, sp2_bits), 0), t_a * dsp_pack_max * t_b * w_bits_dsp)
    bram_w = 2 * _ceil_div(w_tile, width)  # double-buffered weight tiles, one tile per port width
    out_lanes = np.maximum(np.where(has_lut, t_m, 0), t_a * dsp_pack_max)
    bram_out = 2 * _ceil_div(out_lanes * 16, width)  # 16-bit results into the nonlinear units
    bram36 = bram_in + bram_w + bram_out + design.nonlinear_bram36 + design.shell_bram36
    ff = design.ff_per_lut * lut

    packing_ok = t_n <= design.axi_ports * (design.axi_width_bits // a_bits)
    u = design.utilisation_ceiling
    fits = (packing_ok & (lut <= u * device.lut) & (ff <= u * device.ff) & (dsp <= u * device.dsp)
            & (bram36 <= u * device.bram36))
    resource_use = (lut / device.lut + ff / device.ff + dsp / device.dsp + bram36 / device.bram36) / 4

    # energy per frame (pJ → mJ): MACs by bit-width, on-chip operand reads, DRAM traffic
    macs = count * m * k * n  # (L, 1)
    acc = wb + ab + np.ceil(np.log2(np.maximum(2, k)))
    mac_pj = energy.add_8bit_pj * acc / 8 + np.where(wb == 1, 0.0, energy.mult_8bit_pj * wb * ab / 64)
    sram_bits = count * (m * k * ab + k * n * wb)  # each operand read once from on-chip memory (as hw.energy)
    pj = (table.mult * (macs * mac_pj + sram_bits / 64 * energy.sram_64bit_32kb_pj
                        + bits_moved * energy.dram_pj_per_bit)).sum(axis=0)
    return FPGACost(cycles, fps, lut, ff, dsp.astype(np.float64), bram36.astype(np.float64), pj / 1e9,
                    memory_bound, packing_ok, fits, resource_use)


def limiting_factor(cost: FPGACost, device: FPGASpec, design: DesignConstants, index: int) -> str:
    """What stops design point `index` from going faster: memory bandwidth or its most used resource."""
    if cost.memory_bound[index] > 0.5:
        return f"DDR bandwidth ({device.ddr_gbps} GB/s × {design.ddr_efficiency}: {cost.memory_bound[index]:.0%} " \
               "of the cycles are memory-bound)"
    use = {name: float(v[index]) for name, v in cost.utilisation(device).items()}
    name = max(use, key=lambda key: use[key])
    return f"{name.upper()} ({use[name]:.0%} of the device used, ceiling {design.utilisation_ceiling:.0%})"
